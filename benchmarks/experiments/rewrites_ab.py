"""Does each text rewrite earn its place? Each switched off alone, on problems it was not written from.

Run with: ALPHAOPT_HOME=.alphaopt/ab python -m benchmarks.experiments.rewrites_ab \
    --dataset train --offset 30 --limit 15 --skip-test-twins --base rw-all

Use one home for every arm, so that the arms share the LLM call cache. ``--base`` is a
``benchmarks.run`` run over the same items with every rewrite on (the shipped default; run it
first with the same ``--dataset/--offset/--limit/--skip-test-twins``, or let this script run it).
Then, for each rewrite in ``config.REWRITES`` (``sense``, ``bounds``, ``counted``, ``unused``:
``alphaopt/agent/rewrites.py``), the same items run again with that one rewrite off
(``ALPHAOPT_EXPERIMENTAL__TEXT_REWRITES`` set to the others), into ``<base>-no-<rewrite>``.

Decoding is greedy and the calls are cached, so an item on which a rewrite never fired replays
its base run exactly and costs a few seconds; only the items where it fired make new calls.
Prints, per rewrite: the items whose answer changed, those it turned right (right with it, wrong
without), those it turned wrong, and the exact McNemar p-value on the two.

``--offset 30`` skips the first items of each training split, which the development runs that
shaped these rewrites looked at (the first 8 of IndustryOR and MAMO-ComplexLP, the first 23 of
NL4Opt and NLP4LP); twins of test items are left out.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from alphaopt.config import REWRITES, load_settings
from benchmarks.compare import compare
from benchmarks.report import RESULTS, write_summary
from benchmarks.run import bench_agent, run, select_items
from benchmarks.scoring import Tolerance


def arm(items: list[Any], name: str, rewrites: list[str] | bool, progress: bool) -> list[dict[str, Any]]:
    """One arm: ``benchmarks.run`` on the items with these rewrites on, into ``results/<name>``."""
    settings = load_settings().with_experimental(text_rewrites=rewrites)
    out_dir = RESULTS / name
    agent = bench_agent(settings, out_dir, None)
    try:
        rows = run(items, out_dir, settings, tol=Tolerance(), progress=progress, agent=agent)
    finally:
        agent.close()
    write_summary(out_dir, rows)
    return rows


def changed(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[str]:
    """Items whose status or objective differ between the two arms."""
    other = {r["key"]: (r["status"], r["objective"]) for r in b}
    return [r["key"] for r in a if r["key"] in other and other[r["key"]] != (r["status"], r["objective"])]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.experiments.rewrites_ab",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", action="append", required=True)
    parser.add_argument("--offset", type=int, default=30)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--skip-test-twins", action="store_true")
    parser.add_argument("--base", required=True, help="the run with every rewrite on (run here if not finished)")
    parser.add_argument("--only", action="append", choices=REWRITES, help="measure only these rewrites")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    items = select_items(args.dataset, limit=args.limit, offset=args.offset, skip_test_twins=args.skip_test_twins)
    base = arm(items, args.base, True, not args.no_progress)
    table = []
    for rewrite in args.only or REWRITES:
        rows = arm(items, f"{args.base}-no-{rewrite}", [r for r in REWRITES if r != rewrite], not args.no_progress)
        c = compare(base, rows)
        table.append({"rewrite": rewrite, "n": c["n"], "right_with": c["a"], "right_without": c["b"],
                      "changed": changed(base, rows), "turned_right": c["only_a"], "turned_wrong": c["only_b"],
                      "p": round(c["p"], 3)})
    print(f"{len(items)} training items; every rewrite on: {sum(r['correct'] for r in base)} right")
    print(f"{'rewrite':<8} {'n':>3} {'with':>5} {'without':>8} {'changed':>8} {'turned right':>13} "
          f"{'turned wrong':>13} {'p':>6}")
    for t in table:
        print(f"{t['rewrite']:<8} {t['n']:>3} {t['right_with']:>5} {t['right_without']:>8} {len(t['changed']):>8} "
              f"{len(t['turned_right']):>13} {len(t['turned_wrong']):>13} {t['p']:>6.3f}")
    (RESULTS / args.base / "rewrites_ab.json").write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
