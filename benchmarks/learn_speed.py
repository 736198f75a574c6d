"""Where a learning run's model time goes, and what the prompt cache saves: arms side by side.

Run with: python -m benchmarks.learn_speed --runs-db /tmp/learn-yield/runs.db [--replay 40]

Reads the LLM call log of learning runs on **training** problems (``runs.db``, e.g. the one
``benchmarks.learn_yield learn`` writes): per prompt, the calls, prompt and completion tokens and
model seconds, and for the whole log tokens per problem and completion tokens per second of
model time (calls replayed from the call cache left out). Tokens per problem do not depend on
the machine's load; tokens per second do (say how loaded the machine was).

``--replay N`` sends the first N logged requests again, in their order, to the embedded model
(``LlamaTransport``, one thread unless ``ALPHAOPT_EXPERIMENTAL__N_THREADS`` says otherwise),
each with ``max_tokens=1``: only the prompt is processed. llama.cpp reports how many prompt
tokens it evaluated; the rest were reused from the KV cache (the prefix a request shares with
the one before it, or with an earlier one kept in the RAM cache). Arms: ``ram_cache`` (the
transport's default: 1 GiB of saved prompt states, a reused prefix cut back to a batch boundary
and never into a reply, so a request's reply does not depend on the ones before),
``ram_cache_longest`` (the longest shared prefix reused, as llama-cpp-python does: faster, and
the same request can get another greedy reply after other requests), ``live_only`` (no RAM
cache), and ``none`` (every prompt evaluated in full, computed).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

# arm: (RAM cache bytes, repeatable)
ARMS = {"ram_cache": (1 << 30, True), "ram_cache_longest": (1 << 30, False), "live_only": (0, True)}


def usage(runs_db: Path) -> dict[str, Any]:
    """Per prompt and in all: calls, tokens, model seconds; tokens per problem; tokens per second."""
    db = sqlite3.connect(runs_db)
    rows = db.execute("SELECT prompt_name, task_id, input_tokens, output_tokens, latency_ms, cached FROM llm_calls "
                      "WHERE error IS NULL").fetchall()
    per: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    problems = {task for _, task, *_ in rows if task}
    for name, _, tokens_in, tokens_out, ms, cached in rows:
        p = per[name]
        p["calls"] += 1
        p["cached"] += cached
        p["input_tokens"] += tokens_in or 0
        p["output_tokens"] += tokens_out or 0
        if not cached:
            p["model_s"] += (ms or 0) / 1000
            p["fresh_output_tokens"] += tokens_out or 0
    total = {k: sum(p[k] for p in per.values()) for k in ("calls", "cached", "input_tokens", "output_tokens",
                                                           "model_s", "fresh_output_tokens")}
    return {"per_prompt": {k: dict(v) for k, v in per.items()}, "total": total, "problems": len(problems),
            "tokens_per_problem": (total["input_tokens"] + total["output_tokens"]) / max(len(problems), 1),
            "tok_s": total["fresh_output_tokens"] / total["model_s"] if total["model_s"] else 0.0}


def replay(runs_db: Path, n: int) -> dict[str, dict[str, float]]:
    """The first ``n`` logged requests, prompt only, through the embedded model in each arm."""
    import httpx2

    from alphaopt.config import load_settings
    from alphaopt.llm.embedded import embedded_model_path
    from alphaopt.llm.local_model import LlamaTransport

    settings = load_settings()
    db = sqlite3.connect(runs_db)
    requests = [json.loads(m) for (m,) in db.execute(
        "SELECT messages FROM llm_calls WHERE error IS NULL AND cached = 0 ORDER BY created_at LIMIT ?", (n,))]
    out: dict[str, dict[str, float]] = {}
    for arm, (cache_bytes, repeatable) in ARMS.items():
        transport = LlamaTransport(Path(embedded_model_path(settings)), n_ctx=settings.experimental.n_ctx,
                                   n_threads=settings.experimental.n_threads or 1, cache_bytes=cache_bytes,
                                   repeatable=repeatable)
        client = httpx2.Client(transport=transport, timeout=3600)
        totals: dict[str, float] = defaultdict(float)
        start = time.perf_counter()
        for messages in requests:
            body = client.post("http://embedded.local/v1/chat/completions",
                               json={"messages": messages, "max_tokens": 1, "temperature": 0}).json()
            timings = body.get("timings") or {}
            totals["prompt_tokens"] += body["usage"]["prompt_tokens"]
            totals["evaluated"] += timings.get("prompt_n", 0)
            totals["prompt_s"] += timings.get("prompt_ms", 0) / 1000
        totals["wall_s"] = time.perf_counter() - start
        totals["requests"] = len(requests)
        client.close()
        out[arm] = dict(totals)
        print(f"{arm:>10}: {totals['evaluated']:,.0f} of {totals['prompt_tokens']:,.0f} prompt tokens evaluated "
              f"({1 - totals['evaluated'] / max(totals['prompt_tokens'], 1):.0%} reused), prompt time "
              f"{totals['prompt_s']:.0f} s, wall {totals['wall_s']:.0f} s", flush=True)
    print(f"{'none':>10}: every prompt token evaluated ({out['ram_cache']['prompt_tokens']:,.0f})")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs-db", type=Path, required=True, help="the call log of learning runs")
    parser.add_argument("--replay", type=int, default=0, help="replay the first N requests, prompt only")
    parser.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = parser.parse_args(argv)
    found = usage(args.runs_db)
    for name, p in sorted(found["per_prompt"].items(), key=lambda kv: -kv[1]["output_tokens"]):
        print(f"{name:>22}: {p['calls']:>4.0f} calls ({p['cached']:.0f} cached), {p['input_tokens']:>8,.0f} prompt "
              f"and {p['output_tokens']:>7,.0f} completion tokens, {p['model_s']:>6.0f} s")
    t = found["total"]
    print(f"{'all':>22}: {t['calls']:.0f} calls, {found['problems']} problems, {found['tokens_per_problem']:,.0f} "
          f"tokens per problem, {found['tok_s']:.2f} completion tokens/s of model time")
    if args.replay:
        found["replay"] = replay(args.runs_db, args.replay)
    if args.out:
        args.out.write_text(json.dumps(found, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
