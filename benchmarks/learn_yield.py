"""What raises the number of verified insights per failed training problem? Arms side by side.

Run with:
  python -m benchmarks.learn_yield contrasts                # no model call, stored runs
  python -m benchmarks.learn_yield variants                 # solver only, stored programs
  python -m benchmarks.learn_yield learn --limit 6 --arm before --arm after   # the embedded model

``contrasts`` (no model call, no solver) reads the per-item rows that earlier benchmark runs
on **training** splits stored (``results/*/items.jsonl``) and counts, per run, the problems right
at the first program, right only after a repair, diagnosis or patch during the solve (a contrast
the learner now drafts from; before, only a repaired run error was), and wrong.

``variants`` (no model call) takes the wrong programs that earlier runs stored for **training**
problems (the rows of ``results/explore-ab-s11`` and ``results/diagnose-ab``, plus any home
given with ``--from``, through ``benchmarks.stored``) and screens each with the solver: the
old exploration's first step (every variable's integrality flipped at once) against the
single-line variants of ``alphaopt.learning.variants`` (one constraint's direction, the
objective's sense, one variable's integrality, one constraint dropped). It counts the programs
whose target was reached, and by which kind of edit; a variant that writes the target value
never counts.

``learn`` runs ``alphaopt learn``'s loop (``Learner``) on the same training problems once per
arm, each in a fresh home under ``--out`` (the call cache is shared, so an arm replays the
calls another arm already made), and prints each arm's funnel: problems, right at first try,
failed, explored, reached, drafted, verified, merged, retired, tokens and seconds per problem,
tokens per second, and verified insights per failed problem. Arms: ``before`` (the learner's
settings before this change: k=1, 2 model tries, no single-line variants, no solve-time
contrasts) and ``after`` (the defaults), or any ``name:key=value,key=value`` of ``LearnConfig``
fields. Problems come from the ``*_train.jsonl`` files, leaving out test twins
(``benchmarks.stored.training_answers``), in a fixed shuffled order (``--seed``).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from alphaopt.agent.program import hardcodes, integrality_variants
from alphaopt.agent.run import solver_runner
from alphaopt.config import load_settings
from alphaopt.learning.variants import combine, line_variants
from benchmarks.scoring import Tolerance

RESULTS = Path(__file__).parent / "results"
STORED = (RESULTS / "explore-ab-s11" / "explore_ab.jsonl", RESULTS / "diagnose-ab" / "diagnose_ab.jsonl")
ARMS: dict[str, dict[str, Any]] = {
    "before": {"k": 1, "explore_tries": 2, "line_variants": False, "solve_contrasts": False, "placebo": True},
    "after": {},
}


def stored_wrong(homes: list[Path]) -> list[dict[str, Any]]:
    """Wrong programs stored for training problems: ``{"problem", "program", "answer"}`` each,
    one per distinct program."""
    rows: dict[str, dict[str, Any]] = {}
    for path in STORED:
        for line in path.read_text().splitlines() if path.is_file() else []:
            row = json.loads(line)
            rows.setdefault(row["program"], {"problem": row.get("problem", ""), "program": row["program"],
                                             "answer": float(row["answer"])})
    if homes:
        from benchmarks.stored import stored_programs, training_answers

        answers = training_answers()
        for item in stored_programs(homes, answers, ("optimal", "infeasible", "unbounded")):
            rows.setdefault(item["program"], {"problem": item["problem"], "program": item["program"],
                                              "answer": answers[item["problem"]]})
    return list(rows.values())


def screen(args: argparse.Namespace) -> int:
    """The solver-only arm comparison on stored wrong programs."""
    settings = load_settings()
    tolerance = Tolerance()
    rows = stored_wrong(args.homes)
    reached: Counter[str] = Counter()
    tried: Counter[str] = Counter()
    out = RESULTS / args.run / "variants.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with solver_runner(settings) as runner, out.open("w") as f:
        for row in rows:
            first = runner.run(row["program"])
            if first.ok and tolerance.correct(first.objective, row["answer"]):
                continue  # right now (a pipeline change since it was stored)
            found: dict[str, list[str]] = {}
            singles = line_variants(row["program"], row["problem"], limit=args.limit)
            arms = {"integrality_all": [(what, program) for what, program in integrality_variants(row["program"])],
                    **{f"line_{v.kind}": [] for v in singles}}
            for v in singles:
                arms[f"line_{v.kind}"].append((v.change, v.program))
            pairs = [(f"{a.change} + {b.change}", program) for i, a in enumerate(singles) for b in singles[i + 1:]
                     if (program := combine(row["program"], a, b)) is not None]
            arms["pairs"] = pairs[:args.pairs]
            for arm, variants in arms.items():
                for change, program in variants:
                    tried[arm] += 1
                    if hardcodes(program, row["answer"], row["problem"]):
                        continue
                    result = runner.run(program)
                    if result.ok and tolerance.correct(result.objective, row["answer"]):
                        found.setdefault(arm, []).append(change)
                        if arm == "pairs":
                            break
            for arm in found:
                reached[arm] += 1
            reached["any_line"] += any(a.startswith("line_") for a in found)
            reached["any"] += bool(found)
            reached["programs"] += 1
            f.write(json.dumps({"answer": row["answer"], "status": first.status.value, "objective": first.objective,
                                "reached": found}) + "\n")
            print(f"answer {row['answer']:>12g} first {first.status.value:<12} reached: "
                  f"{'; '.join(f'{a}: {c[0]}' for a, c in found.items()) or '-'}", flush=True)
    n = reached.pop("programs", 0)
    print(f"\n{n} wrong programs, {time.perf_counter() - start:.0f} s")
    for arm in sorted(set(tried) | set(reached)):
        print(f"{arm:>18}: reached {reached[arm]} of {n} programs ({tried[arm]} variants run)")
    return 0


def solve_time_contrasts(args: argparse.Namespace) -> int:
    """Per stored training run: right at first, right only after a fix (by the fixing stage), wrong."""
    total: Counter[str] = Counter()
    for path in sorted(RESULTS.glob("*/items.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        rows = [r for r in rows if str(r.get("dataset", "")).endswith("_train")]
        if not rows:
            continue
        counts: Counter[str] = Counter(problems=len(rows))
        for row in rows:
            attempts = row.get("attempts") or []
            if not row.get("correct"):
                counts["wrong"] += 1
            elif len(attempts) <= 1:
                counts["right_first"] += 1
            else:
                counts[f"right_after_{attempts[-1]['stage']}"] += 1
        total.update(counts)
        print(f"{path.parent.name:>24}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    fixed = sum(v for k, v in total.items() if k.startswith("right_after_"))
    print(f"\nall: {', '.join(f'{k} {v}' for k, v in sorted(total.items()))}; right only after a fix: {fixed} "
          f"({fixed / max(total['wrong'], 1):.2f} per wrong one)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("contrasts", help="no model call: fixes during stored training solves")
    variants = sub.add_parser("variants", help="solver only: single-line variants of stored wrong programs")
    variants.add_argument("--from", dest="homes", type=Path, action="append", default=[])
    variants.add_argument("--limit", type=int, default=60, help="variants per program")
    variants.add_argument("--pairs", type=int, default=400, help="pairs of variants per program")
    variants.add_argument("--run", default="learn-yield-variants")
    learn = sub.add_parser("learn", help="learning runs per arm with the configured model")
    learn.add_argument("--limit", type=int, default=6, help="training problems")
    learn.add_argument("--seed", type=int, default=0)
    learn.add_argument("--failing", action="store_true", help="only problems whose stored program was wrong")
    learn.add_argument("--arm", action="append", default=[], help="before, after or name:key=value,...")
    learn.add_argument("--out", type=Path, default=Path("/tmp/learn-yield"))
    learn.add_argument("--run", default="learn-yield")
    args = parser.parse_args(argv)
    if args.command == "contrasts":
        return solve_time_contrasts(args)
    if args.command == "variants":
        return screen(args)
    return learn_arms(args)


def _arm(spec: str) -> tuple[str, dict[str, Any]]:
    if spec in ARMS:
        return spec, ARMS[spec]
    name, _, pairs = spec.partition(":")
    config: dict[str, Any] = {}
    for pair in filter(None, pairs.split(",")):
        key, _, value = pair.partition("=")
        config[key] = json.loads(value) if value not in ("True", "False") else value == "True"
    return name, config


def training_items(limit: int, seed: int, *, failing: bool = False) -> list[tuple[str, str, str, float]]:
    """``limit`` training problems (no test twins) in a fixed shuffled order; with ``failing``,
    only those whose stored program was wrong (``stored_wrong``): learning's yield is counted per
    failed problem, and these are the ones the model failed before."""
    from benchmarks import registry
    from benchmarks.stored import training_answers

    answers = training_answers()
    wrong = {row["problem"] for row in stored_wrong([])}
    items = [(item.dataset, item.id, item.description, item.answer)
             for name in registry.names("train") for item in registry.load(name)
             if item.description in answers and (not failing or item.description in wrong)]
    random.Random(seed).shuffle(items)
    return items[:limit]


def _progress(arm: str) -> Any:
    def show(task: Any, outcome: str, summary: Any) -> None:
        print(f"  {arm} {task.id}: {outcome}", flush=True)
    return show


def arm_total(store: Any) -> Any:
    """The funnel over every learning run an arm's home holds (a stopped arm resumes in a new run)."""
    from alphaopt.learning.funnel import LearnSummary

    total = LearnSummary(run_id="all")
    runs = [r for r in store.runs() if str(r.settings.get("command", "")).startswith("benchmarks.learn_yield")]
    for run in runs:
        c = run.counters
        part = LearnSummary(run_id=run.id, **{k: c[k] for k in LearnSummary.__dataclass_fields__
                                              if k in c and k not in ("run_id", "stopped", "counters")})
        total.absorb(part)
        total.seen += part.seen
        for name in ("tokens", "calls", "cached_calls", "model_s", "fresh_output_tokens", "seconds"):
            setattr(total, name, getattr(total, name) + getattr(part, name))
    total.counters["runs"] = len(runs)
    return total


def learn_arms(args: argparse.Namespace) -> int:
    """Each arm learns from the same problems in a fresh home; prints and records the funnels."""
    from alphaopt.agent.retrieval import open_library
    from alphaopt.learning.funnel import funnel_lines
    from alphaopt.learning.learn import LearnConfig, Learner
    from alphaopt.llm.client import OpenAIClient
    from alphaopt.llm.runlog import RunLog

    items = training_items(args.limit, args.seed, failing=args.failing)
    out = RESULTS / args.run / "funnels.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    cache = args.out / "runs.db"  # one call log for every arm: identical calls replay
    for spec in args.arm or ["before", "after"]:
        name, config = _arm(spec)
        home = args.out / name
        settings = load_settings(home=home, use_library=True, experimental={"starter_library": "none"})
        store, index = open_library(settings)
        llm = OpenAIClient(settings, RunLog(cache))
        with solver_runner(settings) as runner:
            learner = Learner(settings, store, index, llm, runner, LearnConfig(**config))
            summary = learner.learn(items, command=f"benchmarks.learn_yield {spec}", on_task=_progress(name))
        total = arm_total(store)
        row = {"arm": name, "config": config, "problems": [f"{d}/{i}" for d, i, _, _ in items],
               "counters": summary.as_dict(), "home_total": total.as_dict()}
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{name} (this run):\n  " + "\n  ".join(funnel_lines(summary)), flush=True)
        print(f"{name} (every run of this home, {total.counters['runs']} runs):\n  " + "\n  ".join(
            funnel_lines(total)), flush=True)
        index.close()
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
