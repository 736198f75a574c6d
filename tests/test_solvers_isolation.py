"""solvers: every run starts clean, and memory/process/CPU caps hold for a run's processes together."""

from __future__ import annotations

import pytest

from solvers import Limits, SolverRunner, SolveStatus, highs_available, resolve_sandbox
from solvers import runner as runner_module
from solvers.isolation import IsolationPlan, resolve_isolation

pytestmark = pytest.mark.skipif(not highs_available(), reason="HiGHS (highspy) is not installed")
ISOLATION = resolve_isolation()
needs_bwrap = pytest.mark.skipif(resolve_sandbox("auto").kind != "bwrap", reason="bubblewrap is not available")
needs_cgroup = pytest.mark.skipif(ISOLATION.kind == "none", reason=f"no usable cgroup here: {ISOLATION.reason}")
LIMITS = Limits(wall_time_s=20, cpu_time_s=20, memory_mb=1536, file_size_mb=1, max_processes=32)
LP = """
import pyomo.environ as pyo

def build_model():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(bounds=(0, 1))
    m.o = pyo.Objective(expr=m.x, sense=pyo.maximize)
    return m
"""


@pytest.fixture(scope="module")
def runner():
    with SolverRunner(LIMITS) as r:
        yield r


@needs_bwrap
def test_a_program_that_fills_tmp_does_not_reach_the_next_one(runner):
    fill = """
import os

def build_model():
    n = 0
    try:
        while True:
            with open(f"/tmp/fill-{n}", "wb") as f:
                f.write(b"x" * (512 << 10))
            n += 1
    except OSError as exc:
        raise RuntimeError(f"FULL errno={exc.errno} after {n} files") from None
"""
    res = runner.run(fill)
    assert res.status is SolveStatus.ERROR and "FULL errno=28" in res.error  # ENOSPC: /tmp was full
    look = LP.replace("def build_model():\n",
                      "def build_model():\n    import os; print('TMP', sorted(os.listdir('/tmp')))\n")
    res = runner.run(look)
    assert res.ok and "TMP ['.alphaopt', 'run-" in res.log_tail and "fill-" not in res.log_tail


@needs_cgroup
def test_memory_cap_holds_for_all_processes_of_a_run_together():
    program = LP.replace("def build_model():\n", """def build_model():
    import os, time
    children = []
    for _ in range(3):  # 3 x 800 MB: each child is within the per-process limit, together they are not
        pid = os.fork()
        if pid == 0:
            block = b"\\x01" * (800 << 20)
            time.sleep(4)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
""")
    with SolverRunner(LIMITS) as r:
        assert r.run(LP).ok
        group = r._slots[0].worker.group
        res = r.run(program)
        assert res.status is SolveStatus.MEMORY_LIMIT, (res.status, res.error)
        assert "all its processes together" in res.error and res.objective is None
        peak, limit = group.peak_bytes(), group.limit_bytes()
        assert peak is not None and limit is not None and peak <= limit < (LIMITS.memory_mb + 512) << 20
        assert r.run(LP).ok  # the worker (or its replacement) still serves


@needs_cgroup
def test_the_worker_cgroup_carries_the_limits(runner):
    res = runner.run(LP)
    assert res.ok and res.isolation == runner.isolation and res.isolation in res.sandbox
    assert res.isolation.startswith(f"cgroup {ISOLATION.kind}") and "1536 MB" in res.isolation
    group = runner._slots[0].worker.group
    assert group._read("pids", "pids.max").strip() == str(LIMITS.max_processes + 8)
    assert (LIMITS.memory_mb << 20) < group.limit_bytes() < (LIMITS.memory_mb + 512) << 20
    if "cpu" in group.dirs:
        assert group._read("cpu", "cpu.cfs_quota_us").strip() == "100000"
    elif ISOLATION.kind == "v2":
        assert group._read("cpu", "cpu.max").split()[0] == "100000"


def test_without_a_cgroup_the_result_says_the_caps_are_per_process(monkeypatch):
    monkeypatch.setattr(runner_module, "resolve_isolation", lambda: IsolationPlan("none", reason="test: none here"))
    with SolverRunner(LIMITS.model_copy(update={"wall_time_s": 10})) as r:
        res = r.run(LP)
    assert res.ok
    assert res.isolation.startswith("no cgroup (test: none here)") and "per process" in res.isolation
    assert res.isolation in res.sandbox
