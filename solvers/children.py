"""The two children of a run (program, solve), their limits, and how their ends are read.

Sandbox side, forked from the worker. The program child runs ``export.run`` and hands its model
over (``handover.send``); the solve child runs ``trusted.solve`` and writes its result to a pipe.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import sys
import tempfile
import time
from typing import Any

try:
    from solvers import export, handover, trusted
except ImportError:  # inside the sandbox the modules are top-level
    import export  # type: ignore[no-redef]
    import handover  # type: ignore[no-redef, import-not-found, unused-ignore]
    import trusted  # type: ignore[no-redef]

EXIT_MEMORY = 71  # child could not even report a MemoryError
MAX_RESULT_BYTES = 32 << 20


def program_child(workdir: str, program_path: str, output_path: str, sock_fd: int, limits: dict[str, Any]) -> int:
    """Run the program and hand its model over on ``sock_fd``; the exit code of the child."""
    os.setpgid(0, 0)
    out = os.open(output_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)
    sock_fd = os.dup2(sock_fd, 3)
    os.closerange(4, os.sysconf("SC_OPEN_MAX"))  # the protocol pipes must be out of the program's reach
    limit(limits, float(limits["cpu_time_s"]))
    os.chdir(workdir)
    os.umask(0o077)
    os.environ["HOME"] = os.environ["TMPDIR"] = os.environ["PWD"] = workdir
    tempfile.tempdir = workdir
    description, files = export.run(program_path)
    sys.stdout.flush()
    sys.stderr.flush()
    handover.send(sock_fd, description, files)
    return 0


def solve_child(write_end: int, exported: dict[str, Any], paths: dict[str, str], solve_dir: str,
                 time_limit: float, limits: dict[str, Any], deadline: float, cpu_left: float) -> int:
    """Solve the model files at ``paths`` and write the result (JSON) to ``write_end``; the exit code."""
    log = os.open(os.path.join(solve_dir, "solver.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.closerange(3, write_end)
    os.closerange(write_end + 1, os.sysconf("SC_OPEN_MAX"))
    limit(limits, cpu_left)
    os.chdir(solve_dir)
    sys.setrecursionlimit(20_000)  # expression trees of deeply nested models
    try:
        result = trusted.solve(exported, paths, time_limit, limits, deadline)
    except MemoryError:
        result = {"status": "memory_limit", "error": "MemoryError: the solver exceeded the memory limit"}
    except Exception as exc:  # noqa: BLE001 - report as data: the model file broke the trusted side
        result = {"status": "error", "error": f"the trusted solve failed: {type(exc).__name__}: {exc}"}
    sys.stdout.flush()
    data = json.dumps(result).encode()
    view = memoryview(data)
    while view:
        view = view[os.write(write_end, view):]
    return 0


def limit(limits: dict[str, Any], cpu_s: float) -> None:
    """rlimits of one child (per process; the worker's cgroup, if any, caps the run as a whole)."""
    for sig in (signal.SIGXFSZ, signal.SIGPIPE, signal.SIGXCPU):
        signal.signal(sig, signal.SIG_DFL)
    cpu = max(1, int(cpu_s + 0.999))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limits["file_size_mb"]) << 20,) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (int(limits["max_processes"]),) * 2)
    resource.setrlimit(resource.RLIMIT_AS, (int(limits["memory_mb"]) << 20,) * 2)
    try:  # under memory pressure in the cgroup the kernel kills a child, not the worker
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass


def read_until(fd: int, deadline: float) -> tuple[bytes, bool]:
    """Everything written to the pipe until EOF; True when the deadline passed first."""
    chunks: list[bytes] = []
    size = 0
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b"".join(chunks), True
        if not poller.poll(remaining * 1000):
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks), False
        size += len(chunk)
        if size > MAX_RESULT_BYTES:
            return b"", False
        chunks.append(chunk)


def wait_until(pid: int, deadline: float) -> bool:
    """Wait for the child to exit; True when the deadline passed first."""
    fd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            if poller.poll(remaining * 1000):
                return False
    finally:
        os.close(fd)


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def classify(wait_status: int, cpu_used: float, timed_out: bool, limits: dict[str, Any],
              who: str = "the program") -> dict[str, Any] | None:
    """A failure status for how a child ended, or None when it exited normally."""
    if timed_out:
        return {"status": "timeout", "error": f"wall-clock limit of {limits['wall_time_s']} s exceeded; "
                                              f"{who} was killed"}
    if os.WIFSIGNALED(wait_status):
        sig = os.WTERMSIG(wait_status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_used >= float(limits["cpu_time_s"])):
            return {"status": "timeout", "error": f"CPU time limit of {limits['cpu_time_s']} s exceeded ({name})"}
        if sig == signal.SIGXFSZ:
            return {"status": "output_limit",
                    "error": f"file size limit of {limits['file_size_mb']} MB exceeded (output, a written file "
                             "or the exported model)"}
        return {"status": "killed", "error": f"{who}'s process was killed by signal {name}"}
    if os.WEXITSTATUS(wait_status) == EXIT_MEMORY:
        return {"status": "memory_limit", "error": f"MemoryError: {who} exceeded its memory limit"}
    return None
