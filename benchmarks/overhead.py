"""Run with: python -m benchmarks.overhead [-n 20] [--json] [--use-bwrap auto|always|never]

Per-program overhead of the solver sandbox: the same tiny LP is run N times
through the warm path (``SolverRunner``: a preloaded worker forks a program child,
which exports the model, and a solve child, which solves the file) and through the
cold path (``run_program``: a fresh sandboxed Python process, Pyomo and solver
imports included, per program). Prints mean/median wall time per program, the
overhead beyond the solve time, the cold/warm ratio, and the warm path's mean time
per stage (build, route: choosing the format and the solver, export, read: the trusted
side parsing the file, solve, check).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from solvers import Limits, SolverRunner, run_program

PROGRAM = """
import pyomo.environ as pyo

def build_model():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(within=pyo.NonNegativeReals)
    m.y = pyo.Var(within=pyo.NonNegativeReals)
    m.c1 = pyo.Constraint(expr=m.x + m.y <= 4)
    m.c2 = pyo.Constraint(expr=m.x + 3 * m.y <= 6)
    m.profit = pyo.Objective(expr=3 * m.x + 5 * m.y, sense=pyo.maximize)
    return m
"""


def _summary(walls: list[float], solves: list[float]) -> dict[str, float]:
    overhead = [w - s for w, s in zip(walls, solves, strict=True)]
    return {
        "runs": len(walls),
        "wall_mean_s": statistics.fmean(walls),
        "wall_median_s": statistics.median(walls),
        "wall_min_s": min(walls),
        "wall_max_s": max(walls),
        "solve_mean_s": statistics.fmean(solves),
        "overhead_mean_s": statistics.fmean(overhead),
        "overhead_median_s": statistics.median(overhead),
    }


def _timed(call, stages: list[dict[str, float]] | None = None) -> tuple[float, float]:
    start = time.perf_counter()
    result = call()
    wall = time.perf_counter() - start
    if not result.ok:
        raise SystemExit(f"benchmark program did not solve: {result.status} {result.error}")
    if stages is not None:
        stages.append(result.stage_ms)
    return wall, result.solve_time_s or 0.0


def _stage_means(stages: list[dict[str, float]]) -> dict[str, float]:
    """Mean milliseconds per stage over the runs that report it."""
    order = ["build", "route", "export", "read", "solve", "check"]
    names = sorted({name for s in stages for name in s},
                   key=lambda n: (order.index(n) if n in order else len(order), n))
    return {name: statistics.fmean(s[name] for s in stages if name in s) for name in names}


def measure(n: int, use_bwrap: str) -> dict[str, object]:
    limits = Limits(wall_time_s=60, cpu_time_s=60)
    runner = SolverRunner(limits, workers=1, use_bwrap=use_bwrap)  # type: ignore[arg-type]
    try:
        startup = time.perf_counter()
        _timed(lambda: runner.run(PROGRAM))  # waits for the worker to warm up; not counted
        startup = time.perf_counter() - startup
        stages: list[dict[str, float]] = []
        warm = [_timed(lambda: runner.run(PROGRAM), stages) for _ in range(n)]
    finally:
        runner.close()
    cold = [_timed(lambda: run_program(PROGRAM, limits, use_bwrap=use_bwrap)) for _ in range(n)]  # type: ignore[arg-type]
    warm_s = _summary([w for w, _ in warm], [s for _, s in warm])
    cold_s = _summary([w for w, _ in cold], [s for _, s in cold])
    return {
        "sandbox": runner.sandbox,
        "isolation": runner.isolation,
        "warm_stage_ms": _stage_means(stages),
        "n": n,
        "warm_first_call_s": startup,
        "warm": warm_s,
        "cold": cold_s,
        "ratio_cold_over_warm_mean": cold_s["wall_mean_s"] / warm_s["wall_mean_s"],
        "ratio_cold_over_warm_median": cold_s["wall_median_s"] / warm_s["wall_median_s"],
    }


def _print(report: dict[str, object]) -> None:
    print(f"sandbox: {report['sandbox']}")
    print(f"isolation: {report['isolation']}")
    print(f"runs per path: {report['n']}   (warm worker start-up, first call: {report['warm_first_call_s']:.3f} s)")
    print(f"{'path':<6}{'mean':>10}{'median':>10}{'min':>10}{'max':>10}{'solve':>10}{'overhead':>11}{'ovh med':>10}")
    for path in ("warm", "cold"):
        s = report[path]
        assert isinstance(s, dict)
        print(f"{path:<6}" + "".join(f"{s[k] * 1000:>9.1f}ms" for k in
              ("wall_mean_s", "wall_median_s", "wall_min_s", "wall_max_s", "solve_mean_s"))
              + f"{s['overhead_mean_s'] * 1000:>9.1f}ms {s['overhead_median_s'] * 1000:>8.1f}ms")
    print(f"cold/warm: {report['ratio_cold_over_warm_mean']:.1f}x (mean), "
          f"{report['ratio_cold_over_warm_median']:.1f}x (median)")
    stages = report["warm_stage_ms"]
    assert isinstance(stages, dict)
    print("warm stages (mean): " + "  ".join(f"{name} {ms:.1f}ms" for name, ms in stages.items()))
    print(f"routing time (mean): {stages.get('route', 0.0):.2f}ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overhead", description=__doc__.splitlines()[2])
    parser.add_argument("-n", type=int, default=20, help="programs per path (default 20)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--use-bwrap", default="auto", choices=["auto", "always", "never"])
    args = parser.parse_args(argv)
    report = measure(args.n, args.use_bwrap)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
