"""Run with: python -m benchmarks.faults [-n 200] [-c 8] [--fault-rate 0.2] [--request-timeout 1] [--json]

Fault injection for ``alphaopt batch``. A fake OpenAI-compatible endpoint on 127.0.0.1 answers
each request with a correct Pyomo program for the generated LP problem it names, except that a
``--fault-rate`` fraction of requests get a fault instead, one of: HTTP 429, HTTP 500, no answer
within ``--request-timeout`` (a timeout), a garbage body (HTML), or an empty completion.
``alphaopt batch`` runs as a subprocess on ``-n`` problems with ``-c`` in flight; once
``--kill-at`` of the problems have a line in the output, the whole process group gets SIGKILL;
then the same command runs again until it exits 0 (or ``--max-reruns`` reruns, or the time
budget, are spent). Prints: problems answered (and how many of those with the wrong objective),
failed, lost (no line), duplicated (more than one line), the faults injected by kind, the runs
and their exit codes, and replayed faults (calls served from the cache whose reply was empty:
must be 0), and the processes of a killed run still alive two seconds later. Goal: 0 lost,
0 duplicated, 0 wrong, 0 stray.

Nothing leaves the machine: the endpoint listens on 127.0.0.1 and the batch is configured with
its address; the library is off (no embedding model is loaded).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.fake_endpoint import FakeEndpoint, Raw, completion_body

FAULTS = ("http_429", "http_500", "timeout", "garbage", "empty")
_PROBLEM = re.compile(
    r"Maximize (\d+)x \+ (\d+)y subject to x \+ y <= (\d+), x \+ (\d+)y <= (\d+), x <= (\d+)\.")


def problems(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` distinct two-variable LPs ``max a x + b y`` with three ``<=`` rows, and their optima."""
    rng = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < n:
        numbers = (rng.randint(1, 9), rng.randint(1, 9), rng.randint(4, 40), rng.randint(2, 5),
                   rng.randint(6, 60), rng.randint(1, 20))
        if numbers in seen:
            continue
        seen.add(numbers)
        a, b, c, d, e, f = numbers
        text = f"Maximize {a}x + {b}y subject to x + y <= {c}, x + {d}y <= {e}, x <= {f}."
        rows.append({"id": f"lp{len(rows):04d}", "problem": text, "expected": optimum(*numbers)})
    return rows


def optimum(a: int, b: int, c: int, d: int, e: int, f: int) -> float:
    """The LP's optimum by vertex enumeration (the feasible region is a bounded polygon)."""
    lines = [(1, 1, c), (1, d, e), (1, 0, f), (-1, 0, 0), (0, -1, 0)]  # p x + q y <= r
    best = float("-inf")
    for (p1, q1, r1), (p2, q2, r2) in itertools.combinations(lines, 2):
        det = p1 * q2 - p2 * q1
        if det == 0:
            continue
        x, y = (r1 * q2 - r2 * q1) / det, (p1 * r2 - p2 * r1) / det
        if all(p * x + q * y <= r + 1e-9 for p, q, r in lines):
            best = max(best, a * x + b * y)
    return best


def program_for(text: str) -> str:
    """The correct Pyomo program for the generated problem quoted in ``text``."""
    found = _PROBLEM.search(text)
    if found is None:
        return "I cannot read the problem."
    a, b, c, d, e, f = found.groups()
    return f"""```python
import pyomo.environ as pyo

def build_model():
    model = pyo.ConcreteModel()
    model.x = pyo.Var(domain=pyo.NonNegativeReals)
    model.y = pyo.Var(domain=pyo.NonNegativeReals)
    model.obj = pyo.Objective(expr={a} * model.x + {b} * model.y, sense=pyo.maximize)
    model.c1 = pyo.Constraint(expr=model.x + model.y <= {c})
    model.c2 = pyo.Constraint(expr=model.x + {d} * model.y <= {e})
    model.c3 = pyo.Constraint(expr=model.x <= {f})
    return model
```"""


class FaultyRoute:
    """Answers each request with the problem's program, or (at ``rate``) with a fault."""

    def __init__(self, rate: float, timeout_s: float, seed: int) -> None:
        self.rate, self.timeout_s = rate, timeout_s
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.answered = 0

    def __call__(self, body: dict[str, Any]) -> str | Raw:
        with self.lock:
            fault = self.rng.choice(FAULTS) if self.rng.random() < self.rate else None
            self.injected[fault or "none"] += 1
        if fault == "http_429":
            return Raw(429, json.dumps({"error": {"message": "rate limited (injected)"}}))
        if fault == "http_500":
            return Raw(500, json.dumps({"error": {"message": "internal error (injected)"}}))
        if fault == "timeout":
            return Raw(body=json.dumps(completion_body("too late")), delay=self.timeout_s + 1.0)
        if fault == "garbage":
            return Raw(body="<html><body>502 Bad Gateway (injected)</body></html>", content_type="text/html")
        if fault == "empty":
            return ""
        return program_for(body["messages"][-1]["content"])


def run_batch(args: argparse.Namespace, base_url: str, work: Path, kill_at: int | None,
              deadline: float) -> tuple[int | str, float, tuple[int, int]]:
    """One ``alphaopt batch`` run: ``(exit code or how it ended, seconds, (processes below it when
    killed, stray processes))``.

    Once ``kill_at`` lines are written its process group gets SIGKILL; the processes it had
    started (the sandboxed solver workers run in sessions of their own) that are still alive
    two seconds later are counted as strays, and then killed by their ids.
    """
    command = [sys.executable, "-m", "alphaopt", "batch", str(work / "in.jsonl"), "-o", str(work / "out.jsonl"),
               "-c", str(args.concurrency), "--no-progress", "--base-url", base_url, "-m", "fake-model"]
    env = {**os.environ, "ALPHAOPT_HOME": str(work / "home"), "ALPHAOPT_API_KEY": "fake",
           "ALPHAOPT_REQUEST_TIMEOUT_S": str(args.request_timeout), "ALPHAOPT_USE_LIBRARY": "0",
           "ALPHAOPT_EXPERIMENTAL__MAX_RETRIES": str(args.max_retries),
           "ALPHAOPT_EXPERIMENTAL__STARTER_LIBRARY": "none"}
    start = time.perf_counter()
    with (work / "batch.log").open("a") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)
        while process.poll() is None:
            out_of_time = time.time() > deadline
            if out_of_time or (kill_at is not None and _line_count(work / "out.jsonl") >= kill_at):
                children = _descendants(process.pid)
                os.killpg(process.pid, signal.SIGKILL)  # the batch mid-run, as a crash or the OOM killer would
                process.wait()
                ended = "out of time" if out_of_time else "SIGKILL"
                return ended, time.perf_counter() - start, (len(children), _strays(children))
            time.sleep(0.05)
    return process.returncode, time.perf_counter() - start, (0, 0)


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (from /proc), whatever their session."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _strays(pids: list[int]) -> int:
    """How many of ``pids`` are still running two seconds after the kill (then killed by id)."""
    time.sleep(2.0)
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(pid)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(alive)


def _line_count(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def tally(items: list[dict[str, Any]], output: Path, tol: float = 1e-6) -> dict[str, int]:
    """Answered, wrong, failed, lost and duplicated ids of the input, from the output file."""
    lines: dict[str, list[dict[str, Any]]] = {}
    for raw in output.read_bytes().split(b"\n"):
        try:
            row = json.loads(raw)
        except json.JSONDecodeError:
            continue
        lines.setdefault(str(row.get("id")), []).append(row)
    counts = Counter()
    for item in items:
        rows = lines.get(item["id"], [])
        counts["duplicated"] += len(rows) > 1
        if not rows:
            counts["lost"] += 1
        elif rows[0].get("failure") or rows[0].get("objective") is None:
            counts["failed"] += 1
        else:
            counts["answered"] += 1
            expected = item["expected"]
            counts["wrong"] += abs(rows[0]["objective"] - expected) > tol * max(1.0, abs(expected))
    return {k: counts[k] for k in ("answered", "wrong", "failed", "lost", "duplicated")}


def replayed_faults(runs_db: Path) -> int:
    """Calls served from the cache whose reply was empty (a fault replayed as an answer)."""
    with sqlite3.connect(runs_db) as db:
        return db.execute(
            "SELECT count(*) FROM llm_calls WHERE cached = 1 AND (response IS NULL OR "
            "trim(coalesce(json_extract(response, '$.text'), '')) = '')").fetchone()[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1], prog="python -m benchmarks.faults")
    parser.add_argument("-n", "--problems", type=int, default=200)
    parser.add_argument("-c", "--concurrency", type=int, default=8)
    parser.add_argument("--fault-rate", type=float, default=0.2, help="Fraction of requests answered with a fault.")
    parser.add_argument("--request-timeout", type=float, default=1.0, help="ALPHAOPT_REQUEST_TIMEOUT_S, seconds.")
    parser.add_argument("--max-retries", type=int, default=1, help="The client's retries per request.")
    parser.add_argument("--kill-at", type=float, default=0.3, help="SIGKILL once this share of lines is written.")
    parser.add_argument("--max-reruns", type=int, default=5)
    parser.add_argument("--budget", type=float, default=900.0, help="Seconds for all runs together.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="Keep the work folder here (input, output, home, log).")
    parser.add_argument("--json", action="store_true", help="Print the result as one JSON object.")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="alphaopt-faults-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    items = problems(args.problems, args.seed)
    (work / "in.jsonl").write_text("".join(json.dumps({"id": i["id"], "problem": i["problem"]}) + "\n" for i in items))
    route = FaultyRoute(args.fault_rate, args.request_timeout, args.seed)
    deadline = time.time() + args.budget
    runs: list[dict[str, Any]] = []
    with FakeEndpoint(route) as endpoint:
        kill_at: int | None = max(1, int(args.kill_at * args.problems))
        for _ in range(args.max_reruns + 1):
            code, wall, (below, strays) = run_batch(args, endpoint.url, work, kill_at, deadline)
            runs.append({"exit": code, "wall_s": round(wall, 1), "lines_after": _line_count(work / "out.jsonl"),
                         "processes_below": below, "strays": strays})
            kill_at = None
            if code not in (4, "SIGKILL"):  # 4: some items failed, and a rerun retries them
                break
    result = {
        "problems": args.problems, "concurrency": args.concurrency, "fault_rate": args.fault_rate,
        "request_timeout_s": args.request_timeout, "max_retries": args.max_retries,
        **tally(items, work / "out.jsonl"),
        "requests": sum(route.injected.values()),
        "faults_injected": {k: route.injected[k] for k in FAULTS},
        "replayed_faults": replayed_faults(work / "home" / "runs.db"),
        "runs": runs, "work": str(work),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['problems']} problems, -c {args.concurrency}, {args.fault_rate:.0%} of requests faulty "
          f"(timeout {args.request_timeout:g}s, {args.max_retries} client retries)")
    for n, run in enumerate(runs):
        strays = (f"; killed with {run['processes_below']} processes below it, {run['strays']} of them stray"
                  if run["exit"] in ("SIGKILL", "out of time") else "")
        print(f"  run {n + 1}: exit {run['exit']} after {run['wall_s']}s, {run['lines_after']} lines in the output"
              + strays)
    print(f"requests: {result['requests']}, faults injected: "
          + ", ".join(f"{k} {v}" for k, v in result["faults_injected"].items()))
    print(f"answered {result['answered']} (wrong {result['wrong']}), failed {result['failed']}, "
          f"lost {result['lost']}, duplicated {result['duplicated']}, replayed faults {result['replayed_faults']}")
    print(f"work folder: {work}")


if __name__ == "__main__":
    main()
