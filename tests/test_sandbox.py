"""solvers sandbox: hostile programs are contained, get a clear status, and the host is unharmed."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

import pytest

from solvers import Limits, SolverRunner, SolveStatus, highs_available, resolve_sandbox, run_program

pytestmark = pytest.mark.skipif(not highs_available(), reason="Pyomo's HiGHS interface (highspy) is not installed")
HAVE_BWRAP = resolve_sandbox("auto").kind == "bwrap"
needs_bwrap = pytest.mark.skipif(not HAVE_BWRAP, reason="bubblewrap is not available (sandbox fell back to rlimits)")
PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMITS = Limits(wall_time_s=3, cpu_time_s=3, memory_mb=1024, file_size_mb=1, max_processes=32, output_chars=2000)

LP_TAIL = """
def _lp():
    import pyomo.environ as pyo
    m = pyo.ConcreteModel()
    m.x = pyo.Var(bounds=(0, 1))
    m.o = pyo.Objective(expr=m.x)
    return m
"""


@pytest.fixture(scope="module")
def runner():
    if not HAVE_BWRAP:
        pytest.skip("bubblewrap is not available")
    with SolverRunner(LIMITS, use_bwrap="always") as r:
        yield r


def _descendants() -> set[int]:
    """Host pids of every process below this test process (workers, sandboxes, programs)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


@needs_bwrap
def test_no_network(runner):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    program = f"""
import socket

def build_model():
    outcomes = []
    for addr in [("127.0.0.1", {port}), ("1.1.1.1", 80), ("8.8.8.8", 53)]:
        s = socket.socket()
        s.settimeout(1)
        try:
            s.connect(addr)
            outcomes.append("CONNECTED")
        except OSError as exc:
            outcomes.append(type(exc).__name__)
    try:
        socket.getaddrinfo("example.com", 80)
        outcomes.append("RESOLVED")
    except OSError as exc:
        outcomes.append(type(exc).__name__)
    raise RuntimeError("NET " + " ".join(outcomes))
"""
    try:
        res = runner.run(program)
        assert res.status is SolveStatus.ERROR
        assert "NET " in res.error and "CONNECTED" not in res.error and "RESOLVED" not in res.error
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing reached the host's loopback
    finally:
        listener.close()


@needs_bwrap
def test_cannot_write_outside_work_dir(runner):
    name = f"alphaopt-escape-{uuid.uuid4().hex}"
    targets = [f"/tmp/{name}", os.path.join(PROJECT_DIR, name), os.path.join(os.path.dirname(PROJECT_DIR), name)]
    program = f"""
import os

def build_model():
    for path in {targets!r}:
        try:
            with open(path, "w") as f:
                f.write("escaped")
        except OSError:
            pass
    return _lp()
""" + LP_TAIL
    try:
        res = runner.run(program)
        assert res.status is SolveStatus.OPTIMAL
        assert [t for t in targets if os.path.exists(t)] == []
    finally:
        for t in targets:
            if os.path.exists(t):
                os.remove(t)


@needs_bwrap
def test_host_files_and_processes_are_hidden(runner):
    program = f"""
import os

def build_model():
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    raise RuntimeError(f"PIDS {{len(pids)}} PROJECT {{sorted(os.listdir({PROJECT_DIR!r}))}} UID {{os.getuid()}}")
"""
    res = runner.run(program)
    assert res.status is SolveStatus.ERROR
    pids = int(res.error.split("PIDS ")[1].split()[0])
    assert pids <= 4  # bwrap init, the worker, the program: the host's processes are invisible
    assert "pyproject.toml" not in res.error and "solvers" not in res.error.split("PROJECT")[1].split("UID")[0]
    assert "UID 0" not in res.error


def _secret_program() -> str:
    return """
import glob, os

def build_model():
    seen = [repr(dict(os.environ))]
    for path in glob.glob("/proc/*/environ"):
        try:
            with open(path, "rb") as f:
                seen.append(f.read().decode("utf-8", "replace"))
        except OSError:
            pass
    raise RuntimeError("ENV " + " ".join(seen))
"""


@needs_bwrap
def test_environment_secrets_do_not_reach_the_program(monkeypatch):
    secret = f"sk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("ALPHAOPT_API_KEY", secret)
    res = run_program(_secret_program(), LIMITS, use_bwrap="always")
    assert res.status is SolveStatus.ERROR and "ENV " in res.error
    assert "PATH" in res.error
    assert secret not in res.model_dump_json()


@needs_bwrap
def test_fork_bomb_is_contained(runner):
    before = _descendants()
    peak = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], len(_descendants() - before))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        endless = ("import os\n\ndef build_model():\n    while True:\n        try:\n            os.fork()\n"
                   "        except OSError:\n            pass\n")
        res = runner.run(endless)
        assert res.status in (SolveStatus.TIMEOUT, SolveStatus.KILLED, SolveStatus.ERROR)
        assert res.wall_time_s < LIMITS.wall_time_s + 3
        crashing = "import os\n\ndef build_model():\n    while True:\n        os.fork()\n"
        res = runner.run(crashing)
        assert res.status in (SolveStatus.KILLED, SolveStatus.ERROR, SolveStatus.TIMEOUT)
    finally:
        stop.set()
        watcher.join()
    assert peak[0] <= LIMITS.max_processes + 4  # the process limit held
    deadline = time.monotonic() + 5
    while _descendants() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _descendants() - before == set()  # nothing the bomb spawned is left
    assert runner.run("def build_model():\n    return _lp()\n" + LP_TAIL).ok


@needs_bwrap
def test_memory_bomb(runner):
    res = runner.run("def build_model():\n    chunks = []\n    while True:\n        chunks.append(bytearray(10**7))\n")
    assert res.status is SolveStatus.MEMORY_LIMIT
    res = runner.run("def build_model():\n    return bytearray(16 * 1024**3)\n")
    assert res.status is SolveStatus.MEMORY_LIMIT


@needs_bwrap
def test_infinite_loop_times_out(runner):
    res = runner.run("def build_model():\n    while True:\n        pass\n")
    assert res.status is SolveStatus.TIMEOUT
    assert LIMITS.wall_time_s <= res.wall_time_s < LIMITS.wall_time_s + 1.5


@needs_bwrap
def test_cpu_limit_is_a_timeout():
    limits = LIMITS.model_copy(update={"cpu_time_s": 1, "wall_time_s": 10})
    with SolverRunner(limits, use_bwrap="always") as r:
        assert r.run("def build_model():\n    return _lp()\n" + LP_TAIL).ok  # warm: the wall time below is the loop's
        res = r.run("def build_model():\n    while True:\n        pass\n")
    assert res.status is SolveStatus.TIMEOUT and "CPU" in res.error
    assert res.wall_time_s < 5  # the 1 s CPU limit, long before the 10 s wall limit


@needs_bwrap
def test_huge_output_is_capped(runner):
    res = runner.run("def build_model():\n    while True:\n        print('x' * 1000)\n")
    assert res.status is SolveStatus.OUTPUT_LIMIT
    assert 0 < len(res.log_tail) <= LIMITS.output_chars


def test_chatty_program_log_tail_is_capped():
    program = ("def build_model():\n    for i in range(200):\n        print('line', i, 'x' * 50)\n    return _lp()\n"
               + LP_TAIL)
    res = run_program(program, LIMITS)
    assert res.ok
    assert len(res.log_tail) <= LIMITS.output_chars and "line 199" in res.log_tail


# The fallback (no bubblewrap): rlimits, an empty environment and a throwaway work dir.

def test_fallback_clears_environment(monkeypatch):
    secret = f"sk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("ALPHAOPT_API_KEY", secret)
    program = "import os\n\ndef build_model():\n    raise RuntimeError('ENV ' + repr(dict(os.environ)))\n"
    res = run_program(program, LIMITS, use_bwrap="never")
    assert res.sandbox.startswith("rlimits only")
    assert res.status is SolveStatus.ERROR and "PATH" in res.error
    assert secret not in res.model_dump_json()


def test_fallback_uses_a_throwaway_work_dir():
    program = """
import os

def build_model():
    with open("marker.txt", "w") as f:
        f.write("x")
    raise RuntimeError("CWD " + os.getcwd() + " HOME " + os.environ["HOME"])
"""
    with SolverRunner(LIMITS.model_copy(update={"wall_time_s": 1.0}), use_bwrap="never", warm=True) as r:
        res = r.run(program)
        assert res.status is SolveStatus.ERROR
        cwd = res.error.split("CWD ")[1].split()[0]
        assert cwd != os.getcwd() and not cwd.startswith(PROJECT_DIR)
        assert res.error.split("HOME ")[1].split()[0] == cwd
        assert not os.path.exists(cwd)  # removed after the run
        res = r.run("def build_model():\n    while True:\n        pass\n")
        assert res.status is SolveStatus.TIMEOUT
        res = r.run("def build_model():\n    return bytearray(16 * 1024**3)\n")
        assert res.status is SolveStatus.MEMORY_LIMIT


def test_opening_a_locked_work_dir_never_follows_a_link_and_never_raises(tmp_path):
    """The wipe opens (chmod 700) directories a program locked; Linux has no lchmod, so a link is skipped."""
    from solvers.workspace import _walk_opening

    outside = tmp_path / "outside"
    outside.mkdir(mode=0o755)
    work = tmp_path / "work"
    (work / "locked" / "deeper").mkdir(parents=True)
    (work / "link").symlink_to(outside, target_is_directory=True)
    (work / "locked").chmod(0o000)
    seen = [dirpath for dirpath, _, _ in _walk_opening(str(work))]
    assert str(work / "locked") in seen and str(work / "locked" / "deeper") in seen
    assert (work / "locked").stat().st_mode & 0o777 == 0o700
    assert outside.stat().st_mode & 0o777 == 0o755  # the link's target was left alone


@needs_bwrap
def test_a_virtual_environment_reached_through_a_link_still_gets_the_bubblewrap_sandbox(tmp_path):
    # project/.venv -> the real environment: the project folder is hidden inside the sandbox, so
    # the worker must be started by a path that exists there
    import subprocess
    import sys
    from pathlib import Path

    project = tmp_path / "project"
    project.mkdir()
    (project / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    linked_python = project / ".venv" / "bin" / Path(sys.executable).name
    code = "from solvers.sandbox import resolve_sandbox; print(resolve_sandbox('auto').kind)"
    repo = str(Path(__file__).resolve().parent.parent)
    out = subprocess.run([str(linked_python), "-c", code], cwd=project, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": repo})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "bwrap", out.stderr
