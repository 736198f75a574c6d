"""Run with: python -m benchmarks.scaleout [--latency 0.5] [--problems 48] [--workers 1,2,4] [--threads 1,2,4] [--json]

Scale-out throughput of ``alphaopt batch`` (``run_batch``, the function the command runs) against a
fake OpenAI-compatible endpoint on 127.0.0.1 that answers every request after a fixed latency
(``benchmarks/fake_endpoint.py``; one call per problem, the LLM cache off). The solver, the
sandbox and the run log are real. Side by side, in one run:

- Dask: ``--cluster local:N`` for each N of ``--workers`` (N worker processes, one thread each,
  each with its own agent and sandboxed solver);
- threads: ``--concurrency N`` in one process for each N of ``--threads``, for comparison.

For each: the wall time (starting the cluster and the workers' agents included), the time to
the first result, and the throughput after it (problems per second between the first result and
the last), with the speed-up over the first row of its kind. The target is 4 workers at 3.5x
one. Then the scheduler's own overhead: per problem, the time a cluster's worker spent on a
problem beyond the agent's own time for it (the median ``Solution.timings.total_s``), and the
round trip of a no-op task through the same submit/as-completed path. The agent's time is CPU
work (the graph, the sandboxed solve, the run log) on top of the latency, so the speed-up needs
about one free core per worker.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from alphaopt.cluster import connect, cores, each_result
from alphaopt.config import load_settings
from alphaopt.interfaces.batch import run_batch
from alphaopt.jsonl import read_jsonl
from benchmarks.fake_endpoint import LP_PROGRAM, FakeEndpoint

PROBLEM = "Maximize 3x + 2y subject to x + y <= 4, x + 3y <= 6, x <= 3."


def _noop(item: int) -> int:
    return item


def measure(label: str, endpoint: FakeEndpoint, n: int, *, cluster: str | None, concurrency: int,
            workers: int) -> dict[str, Any]:
    """One ``run_batch`` of ``n`` problems; its timings."""
    with tempfile.TemporaryDirectory(prefix="alphaopt-scaleout-") as tmp:
        settings = load_settings(home=Path(tmp) / "home", base_url=endpoint.url, model="fake", use_library=False,
                                 experimental={"cache": False})
        lines = "".join(json.dumps({"id": f"p{i}", "problem": PROBLEM}) + "\n" for i in range(n)).encode()
        records = read_jsonl(lines, "scaleout")
        arrivals: list[float] = []
        start = time.perf_counter()
        summary = run_batch(records, "scaleout", Path(tmp) / "out.jsonl", settings, concurrency=concurrency,
                            cluster=cluster, on_progress=lambda _item, _line: arrivals.append(time.perf_counter()))
        wall = time.perf_counter() - start
        out = [json.loads(line) for line in (Path(tmp) / "out.jsonl").read_text().splitlines()]
    agent_s = statistics.median(line["timings"]["total_s"] for line in out if not line.get("failure"))
    steady = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0
    row = {"label": label, "workers": workers, "problems": n, "answered": summary.answered, "failed": summary.failed,
           "wall_s": round(wall, 2), "first_s": round(arrivals[0] - start, 2) if arrivals else None,
           "problems_per_s": round(steady, 3), "agent_s": round(agent_s, 3)}
    if cluster is not None and steady:
        # each worker finishes one problem every workers/steady seconds; beyond the agent's own time
        # that is the price of the cluster: scheduling, moving the item and the solution, writing the line
        row["cluster_overhead_ms"] = round((workers / steady - agent_s) * 1000, 1)
    return row


def noop_round_trip(workers: int, settings: Any, n: int = 200) -> float:
    """Milliseconds per no-op task through submit and as-completed on ``local:workers``."""
    with connect(f"local:{workers}", settings) as (client, _):
        list(each_result(client, _noop, list(range(10))))  # warm
        start = time.perf_counter()
        list(each_result(client, _noop, list(range(n))))
        return (time.perf_counter() - start) / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description="alphaopt batch on 1, 2, 4 Dask workers against a fake endpoint.")
    parser.add_argument("--latency", type=float, default=0.5, help="Seconds the endpoint waits before each reply.")
    parser.add_argument("--problems", type=int, default=48)
    parser.add_argument("--workers", default="1,2,4", help="Dask worker counts, comma-separated.")
    parser.add_argument("--threads", default="1,2,4", help="Thread counts in one process (0 or empty: none).")
    parser.add_argument("--json", action="store_true", help="Print the rows as JSON too.")
    args = parser.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    thread_counts = [int(t) for t in args.threads.split(",") if t.strip() and int(t) > 0]
    rows: list[dict[str, Any]] = []
    with FakeEndpoint(lambda _body: LP_PROGRAM, latency_s=args.latency) as endpoint:
        for w in worker_counts:
            rows.append(measure(f"dask local:{w}", endpoint, args.problems, cluster=f"local:{w}", concurrency=1,
                                workers=w))
            print(f"  done: dask local:{w}", file=sys.stderr, flush=True)
        for t in thread_counts:
            rows.append(measure(f"threads {t}", endpoint, args.problems, cluster=None, concurrency=t, workers=t))
            print(f"  done: threads {t}", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(home=Path(tmp), base_url="http://127.0.0.1:9/v1", model="fake")
        noop_ms = noop_round_trip(max(worker_counts), settings) if worker_counts else None
    for kind in ("dask", "threads"):
        mine = [r for r in rows if r["label"].startswith(kind)]
        base = mine[0]["problems_per_s"] if mine else 0.0
        for r in mine:
            r["speedup"] = round(r["problems_per_s"] / base, 2) if base else None
    print(f"alphaopt batch, {args.problems} problems, endpoint latency {args.latency:g} s, one call per problem; "
          f"this machine: {cores()} cores (load {os.getloadavg()[0]:.1f})")
    print(f"{'run':<15} {'wall s':>7} {'first s':>8} {'problems/s':>11} {'speed-up':>9} {'agent s':>8} "
          f"{'cluster overhead/problem':>25}")
    for r in rows:
        overhead = f"{r['cluster_overhead_ms']:.0f} ms" if "cluster_overhead_ms" in r else "-"
        print(f"{r['label']:<15} {r['wall_s']:>7.1f} {r['first_s']:>8.1f} {r['problems_per_s']:>11.2f} "
              f"{r['speedup']:>8.2f}x {r['agent_s']:>8.2f} {overhead:>25}")
    if noop_ms is not None:
        print(f"Scheduler round trip of a no-op task (submit, run, as_completed) on local:{max(worker_counts)}: "
              f"{noop_ms:.1f} ms")
    if args.json:
        print(json.dumps({"latency_s": args.latency, "cores": cores(), "rows": rows, "noop_ms": noop_ms}, indent=2))


if __name__ == "__main__":
    main()
