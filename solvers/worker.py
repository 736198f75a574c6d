"""Sandbox side: the warm worker (a small fork server).

Started once inside the sandbox as ``python -I -B worker.py '<json config>'``.
It drops privileges, preloads Pyomo and HiGHS, announces ``{"ready": true}``
and then serves JSON-line requests on stdin/stdout::

    -> {"id": "...", "program": "...", "time_limit_s": 5.0, "limits": {...}}
    <- {"id": "...", "result": {...SolveResult fields...}}

For each request it forks a child that gets a fresh work dir, rlimits and its
own process group, executes the program and solves (``harness.run``). The
parent enforces the wall-clock limit, maps exit signals to statuses, kills
everything the program left behind and removes the work dir. Only the standard
library is used here; this file never imports the rest of the project.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import select
import shutil
import signal
import sys
import tempfile
import time
from typing import Any

if __package__:
    from . import harness
else:  # run as a script inside the sandbox: the sibling module is on sys.path
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import harness  # type: ignore[no-redef]

_EXIT_MEMORY = 71  # child could not even report a MemoryError
_MAX_RESULT_BYTES = 8 << 20
_PR_SET_DUMPABLE, _PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS = 4, 24, 38


def main(argv: list[str]) -> int:
    config = json.loads(argv[1])
    _harden(config.get("uid"))
    sys.path.extend(p for p in config.get("sys_path", []) if p not in sys.path)
    if config.get("probe"):  # sandbox check: privileges dropped and the solver importable?
        import highspy  # noqa: F401
        import pyomo  # noqa: F401

        _send(sys.stdout.buffer, {"ready": True, "pid": os.getpid()})
        return 0
    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)  # stray prints of the worker go to its stderr, never into the protocol
    server = _Server(config)
    harness.preload(bool(config.get("warm", True)))
    _send(proto_out, {"ready": True, "pid": os.getpid()})
    for line in proto_in:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            result = server.handle(request, lambda event: _send(proto_out, {"id": request["id"], **event}))
        except Exception as exc:  # noqa: BLE001 - a bug here, not in the program: tell the host
            _send(proto_out, {"id": request.get("id"), "harness_error": f"{type(exc).__name__}: {exc}"})
            continue
        _send(proto_out, {"id": request["id"], "result": result})
    return 0


def _send(stream: Any, message: dict[str, Any]) -> None:
    stream.write(json.dumps(message).encode() + b"\n")
    stream.flush()


def _harden(uid: int | None) -> None:
    """Drop to an unprivileged uid (when started as root) and forbid ptrace/new privileges."""
    libc = ctypes.CDLL(None, use_errno=True)
    if uid is not None and os.geteuid() == 0:
        last_cap = int(open("/proc/sys/kernel/cap_last_cap").read())
        for cap in range(last_cap + 1):
            libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # all uids non-zero: every capability is cleared
        if os.geteuid() != uid or os.getuid() != uid:
            raise SystemExit("worker: failed to drop privileges")
    libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)  # the program's process cannot ptrace the worker


class _Server:
    def __init__(self, config: dict[str, Any]) -> None:
        self.in_pid_namespace = config.get("mode") == "bwrap"
        self.work_root = config.get("work_root") or tempfile.gettempdir()

    def handle(self, request: dict[str, Any], notify: Any) -> dict[str, Any]:
        limits = request["limits"]
        workdir = tempfile.mkdtemp(prefix="run-", dir=self.work_root)
        try:
            program_path = os.path.join(workdir, harness.PROGRAM_NAME)
            with open(program_path, "w", encoding="utf-8") as f:
                f.write(request["program"])
            return self._run_child(workdir, program_path, request.get("time_limit_s"), limits, notify)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _run_child(self, workdir: str, program_path: str, time_limit: float | None,
                   limits: dict[str, Any], notify: Any) -> dict[str, Any]:
        output_path = os.path.join(workdir, "output.log")
        result_path = os.path.join(workdir, "result.json")
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 70
            try:
                code = _child(workdir, program_path, output_path, result_path, time_limit, limits)
            except MemoryError:
                code = _EXIT_MEMORY
            finally:
                os._exit(code)
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass
        if not self.in_pid_namespace:
            notify({"event": "started", "pgid": pid})
        timed_out = _wait_until(pid, start + float(limits["wall_time_s"]))
        if timed_out:
            _kill_group(pid)
            _kill(pid)
        _, wait_status, usage = os.wait4(pid, 0)
        self._sweep(pid)
        result = _classify(wait_status, usage, timed_out, limits, result_path, output_path)
        result["log_tail"] = _log_tail(output_path, result.pop("solver_log", "") or "", int(limits["output_chars"]))
        return result

    def _sweep(self, pgid: int) -> None:
        """Kill whatever the program left running (daemons, fork-bomb survivors)."""
        _kill_group(pgid)
        if self.in_pid_namespace:  # alone in our pid namespace: -1 means "every process but us and init"
            for _ in range(100):
                try:
                    os.kill(-1, signal.SIGKILL)
                except ProcessLookupError:
                    break
                except PermissionError:
                    break
                time.sleep(0.002)


def _child(workdir: str, program_path: str, output_path: str, result_path: str,
           time_limit: float | None, limits: dict[str, Any]) -> int:
    os.setpgid(0, 0)
    out = os.open(output_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # the protocol pipes must be out of the program's reach
    for sig in (signal.SIGXFSZ, signal.SIGPIPE, signal.SIGXCPU):
        signal.signal(sig, signal.SIG_DFL)
    cpu = max(1, int(float(limits["cpu_time_s"]) + 0.999))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limits["file_size_mb"]) << 20,) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (int(limits["max_processes"]),) * 2)
    resource.setrlimit(resource.RLIMIT_AS, (int(limits["memory_mb"]) << 20,) * 2)
    os.chdir(workdir)
    os.umask(0o077)
    os.environ["HOME"] = os.environ["TMPDIR"] = os.environ["PWD"] = workdir
    tempfile.tempdir = workdir
    result = harness.run(program_path, time_limit)
    harness._exit_if_not_owner(os.getpid())
    data = json.dumps(result)
    tmp = result_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(data)
    os.replace(tmp, result_path)
    sys.stdout.flush()
    sys.stderr.flush()
    return 0


def _wait_until(pid: int, deadline: float) -> bool:
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


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _classify(wait_status: int, usage: Any, timed_out: bool, limits: dict[str, Any],
              result_path: str, output_path: str) -> dict[str, Any]:
    cpu_used = usage.ru_utime + usage.ru_stime
    if timed_out:
        return {"status": "timeout", "error": f"wall-clock limit of {limits['wall_time_s']} s exceeded; the program was killed"}
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
                    "error": f"file size limit of {limits['file_size_mb']} MB exceeded (output or a written file)"}
        return {"status": "killed", "error": f"the program's process was killed by signal {name}"}
    code = os.WEXITSTATUS(wait_status)
    if code == _EXIT_MEMORY:
        return {"status": "memory_limit", "error": "MemoryError: the program exceeded its memory limit"}
    try:
        if os.path.getsize(result_path) > _MAX_RESULT_BYTES:
            return {"status": "error", "error": "the result was too large"}
        with open(result_path, encoding="utf-8") as f:
            result = json.load(f)
        if isinstance(result, dict) and code == 0:
            return result
    except (OSError, ValueError):
        pass
    return {"status": "error", "error": f"the program ended the process (exit code {code}) before a result was produced"}


def _log_tail(output_path: str, solver_log: str, chars: int) -> str:
    if chars <= 0:
        return ""
    try:
        with open(output_path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 4 * chars))
            output = f.read().decode("utf-8", "replace")
            if size > 4 * chars:
                output = "[... output truncated ...]\n" + output[-chars:]
    except OSError:
        output = ""
    parts = [p for p in (output.rstrip(), solver_log.rstrip()) if p]
    text = "\n--- solver log ---\n".join(parts) if len(parts) == 2 else (parts[0] if parts else "")
    return text if len(text) <= chars else text[-chars:]


if __name__ == "__main__":
    sys.exit(main(sys.argv))
