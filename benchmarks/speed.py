"""Embedded-model speed inside the pipeline against llama.cpp's own speed, and tokens per problem.

Run with: python -m benchmarks.speed --home .alphaopt/bench [--raw]

Reads the LLM call log (``runs.db``) of an alphaopt home: completion tokens per second of each
call as the pipeline saw it (wall time of the request, prompt processing included, cache hits
excluded), and prompt tokens per solved problem. ``--raw`` also measures llama.cpp directly on
this machine (``alphaopt.llm.local_model.llama_speed``) for comparison. Run it on an idle machine:
another model process on the same cores distorts both numbers.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
from pathlib import Path
from typing import Any


def pipeline_speed(runs_db: Path) -> dict[str, Any]:
    """Per-call and per-run token figures from a call log."""
    db = sqlite3.connect(runs_db)
    rows = db.execute("SELECT run_id, input_tokens, output_tokens, latency_ms FROM llm_calls "
                      "WHERE error IS NULL AND cached = 0 AND latency_ms > 0").fetchall()
    if not rows:
        return {"calls": 0}
    per_call = [out / (ms / 1000) for _, _, out, ms in rows if out]
    per_run: dict[str, int] = {}
    for run_id, tokens_in, _, _ in rows:
        per_run[run_id] = per_run.get(run_id, 0) + (tokens_in or 0)
    return {
        "calls": len(rows),
        "completion_tok_s_median": round(statistics.median(per_call), 2),
        "completion_tok_s_mean": round(statistics.fmean(per_call), 2),
        "prompt_tokens_per_problem_mean": round(statistics.fmean(per_run.values()), 1),
        "prompt_tokens_per_problem_median": statistics.median(per_run.values()),
        "problems": len(per_run),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, required=True, help="alphaopt home whose runs.db to read")
    parser.add_argument("--raw", action="store_true", help="also measure llama.cpp's own speed here")
    parser.add_argument("--threads", type=int, help="threads for the raw measurement")
    args = parser.parse_args()
    report: dict[str, Any] = {"pipeline": pipeline_speed(args.home / "runs.db")}
    if args.raw:
        from alphaopt.config import default_model_dir
        from alphaopt.llm.local_model import llama_speed
        from alphaopt.llm.model_fetch import DEFAULT_MODEL

        report["llama_cpp"] = llama_speed(default_model_dir() / DEFAULT_MODEL.filename, 128, n_threads=args.threads)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
