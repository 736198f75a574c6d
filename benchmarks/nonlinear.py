"""The test items whose programs HiGHS refused as nonlinear, solved again through the SCIP route.

Run with: ALPHAOPT_EXPERIMENTAL__N_THREADS=1 python -m benchmarks.nonlinear

In the last full run on the embedded model (``benchmarks/results/embedded-s9-lines``) these
five test items ended with Pyomo's ``IncompatibleModelError`` ("Highs interface does not
support expressions of degree None"): the program, or the line a diagnosis added, had a
nonlinear term. The solver layer now routes such a model to SCIP. This runs just those items
with the shipped settings and the embedded model (or ``--base-url``/``--model``), and reports
per item the solver of every attempt, the final status, the proof and whether the objective is
right (within ``alphaopt.answers.ANSWER``). They are test items: report only, never tune on them.

Results: ``benchmarks/results/<run>/items.jsonl`` (resumable, like ``benchmarks.run``) and a
Markdown table beside it.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from alphaopt.agent import prompts
from alphaopt.agent.run import Agent
from alphaopt.agent.state import Solution
from alphaopt.config import Settings, load_settings
from alphaopt.errors import AlphaoptError
from benchmarks import honesty, registry
from benchmarks.report import RESULTS
from benchmarks.run import git_sha, item_record, read_done
from benchmarks.scoring import Tolerance

#: The items and how the earlier run ended them (benchmarks/results/embedded-s9-lines/items.jsonl).
ITEMS = ("nlp4lp_test/A149", "industryor_test/B075", "nl4opt_test/F058", "mamo_complex_test/E109",
         "nlp4lp_test/A117")
EARLIER = RESULTS / "embedded-s9-lines" / "items.jsonl"


def select(keys: tuple[str, ...] = ITEMS) -> list[registry.Item]:
    """The named items, in the order given."""
    datasets = sorted({key.split("/", 1)[0] for key in keys})
    found = {i.key: i for d in datasets for i in registry.load(d)}
    missing = [k for k in keys if k not in found]
    if missing:
        raise SystemExit(f"Not in the bundled datasets: {', '.join(missing)}")
    return [found[k] for k in keys]


def record(item: registry.Item, outcome: Solution | AlphaoptError, tol: Tolerance) -> dict[str, Any]:
    """``benchmarks.run``'s row, plus the solver of each attempt and what the chosen one proved."""
    twins, suspects = honesty.honesty_flags([item])
    row = item_record(item, outcome, tol, twins, suspects)
    if isinstance(outcome, Solution):
        row["solver"], row["proof"], row["model_class"] = outcome.solver, outcome.proof, outcome.model_class
        row["gap"] = outcome.gap
        row["check_passed"] = None if outcome.check is None else outcome.check.passed
        for attempt, solved in zip(row["attempts"], outcome.attempts, strict=True):
            attempt["solver"] = solved.solver
    return row


def earlier_rows(path: Path = EARLIER) -> dict[str, dict[str, Any]]:
    """The earlier run's rows for these items (empty when that run is not here)."""
    return {k: v for k, v in read_done(path).items() if k in ITEMS}


def table(rows: list[dict[str, Any]], earlier: dict[str, dict[str, Any]]) -> str:
    """The per-item report, in Markdown."""
    lines = ["| item | before | solvers (per attempt) | status | proof | objective | answer | right |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        before = earlier.get(row["key"], {})
        solvers = " → ".join(f"{a['stage']}:{a.get('solver') or '-'}/{a['status']}" for a in row.get("attempts", []))
        lines.append(f"| {row['key']} | {before.get('status', '?')} | {solvers or '-'} | {row['status']} | "
                     f"{row.get('proof', '-')} | {row.get('objective')} | {row['answer']} | "
                     f"{'yes' if row['correct'] else 'no'} |")
    right = sum(r["correct"] for r in rows)
    statuses = Counter(r["status"] for r in rows)
    solvers = Counter(r.get("solver") or "none" for r in rows)
    lines.append(f"\n{right} of {len(rows)} right (tolerance {Tolerance().describe()}); final status: "
                 + ", ".join(f"{k} {v}" for k, v in statuses.most_common()) + "; final solver: "
                 + ", ".join(f"{k} {v}" for k, v in solvers.most_common()) + ".")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.nonlinear", description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="embedded-nonlinear", help="results folder under benchmarks/results")
    parser.add_argument("--model", help="model id at the endpoint (default: embedded model)")
    parser.add_argument("--base-url", help="OpenAI-compatible endpoint (default: embedded model)")
    args = parser.parse_args(argv)

    settings = load_settings(model=args.model, base_url=args.base_url, use_library=False)
    out_dir = RESULTS / args.run
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "items.jsonl"
    done = read_done(path)
    tol = Tolerance()
    with Agent(settings) as agent, path.open("a") as sink:
        for item in select():
            if item.key in done:
                continue
            try:
                outcome: Solution | AlphaoptError = agent.solve(item.description)  # the text only
            except AlphaoptError as exc:
                outcome = exc
            done[item.key] = record(item, outcome, tol)
            sink.write(json.dumps(done[item.key]) + "\n")
            sink.flush()
            print(f"{item.key}: {done[item.key]['status']} {done[item.key].get('solver')} "
                  f"{'right' if done[item.key]['correct'] else 'wrong'}", flush=True)
    rows = [done[k] for k in ITEMS if k in done]
    report = table(rows, earlier_rows())
    meta = run_meta(settings)
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2))
    (out_dir / "summary.md").write_text(f"# Nonlinear items again\n\n{json.dumps(meta)}\n\n{report}\n")
    print(report)


def run_meta(settings: Settings) -> dict[str, Any]:
    """What the run ran with: the model, the loop's caps, the prompts' shas and the commit."""
    return {"git_sha": git_sha(), "model": settings.model_name, "endpoint": settings.base_url or "embedded",
            "samples": settings.samples, "max_repairs": settings.max_repairs,
            "max_diagnoses": settings.experimental.max_diagnoses, "solver_wall_time_s": settings.solver_wall_time_s,
            "prompt_shas": {n: prompts.prompt_sha(n) for n in prompts.PROMPTS}}


if __name__ == "__main__":
    main()
