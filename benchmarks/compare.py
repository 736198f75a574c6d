"""Paired comparison of two benchmark runs on the items both finished.

Run with: python -m benchmarks.compare embedded-none embedded-vote-none

Prints each run's accuracy on the shared items, the items only one of them got right, and the
exact two-sided McNemar p-value on those discordant items (small n: read it, don't trust a
difference it calls noise).
"""

from __future__ import annotations

import argparse
from math import comb
from typing import Any

from benchmarks.report import load_run, run_dir


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar test: a binomial(n, 1/2) test on the discordant pairs."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)


def compare(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts on the items present in both runs (matched by key)."""
    right_a = {r["key"]: bool(r["correct"]) for r in a}
    right_b = {r["key"]: bool(r["correct"]) for r in b}
    shared = sorted(set(right_a) & set(right_b))
    only_a = [k for k in shared if right_a[k] and not right_b[k]]
    only_b = [k for k in shared if right_b[k] and not right_a[k]]
    return {
        "n": len(shared),
        "a": sum(right_a[k] for k in shared),
        "b": sum(right_b[k] for k in shared),
        "only_a": only_a,
        "only_b": only_b,
        "p": mcnemar_p(len(only_a), len(only_b)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__.splitlines()[0])
    parser.add_argument("run_a", help="a folder name under benchmarks/results, or a path to a run's folder")
    parser.add_argument("run_b")
    args = parser.parse_args(argv)
    (_, a), (_, b) = load_run(run_dir(args.run_a)), load_run(run_dir(args.run_b))
    c = compare(a, b)
    n = c["n"] or 1
    print(f"{c['n']} items in both runs")
    print(f"  {args.run_a}: {c['a']}/{c['n']} = {100 * c['a'] / n:.1f}%")
    print(f"  {args.run_b}: {c['b']}/{c['n']} = {100 * c['b'] / n:.1f}%")
    print(f"  right only in {args.run_a}: {len(c['only_a'])} {c['only_a']}")
    print(f"  right only in {args.run_b}: {len(c['only_b'])} {c['only_b']}")
    print(f"  exact McNemar p = {c['p']:.3f}")


if __name__ == "__main__":
    main()
