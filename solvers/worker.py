"""Sandbox side: the warm worker (a small fork server).

Started once inside the sandbox as ``python -I -B worker.py '<json config>'``.
It drops privileges, preloads Pyomo, HiGHS and SCIP, announces ``{"ready": true}``
and then serves JSON-line requests on stdin/stdout::

    -> {"id": "...", "program": "...", "time_limit_s": 5.0, "limits": {...}}
    <- {"id": "...", "result": {...SolveResult fields...}}

Each request runs in two forked children, under one wall-clock deadline:

1. the program child gets a fresh work dir, rlimits and its own process group, executes the
   program and hands its model over (``export.run``, ``handover.send``); then everything the
   program left running is killed, and only what the program child itself handed over is
   taken (``handover.receive``);
2. the solve child, forked from this process (which never runs program code), solves, checks
   and renders those model files (``trusted.solve``) and sends the result back through a
   pipe. Nothing the program wrote to disk is read, except its output for the log tail.

The work root (the sandbox's ``/tmp``) and ``/dev/shm`` are wiped after the program and after
the run, so every program and every solve starts with an empty ``/tmp``. Only the standard
library is used here, plus the sibling modules (``children``, ``handover``, ``workspace``,
``export``, ``trusted``); this file never imports the rest of the project.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import Any

if __package__:
    from solvers import children, export, handover, trusted, workspace
else:  # run as a script inside the sandbox: the sibling modules are on sys.path, used top-level
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.modules["solvers"] = None  # type: ignore[assignment]  # never the host package, even where importable
    import children  # type: ignore[no-redef, import-not-found, unused-ignore]
    import export  # type: ignore[no-redef]
    import handover  # type: ignore[no-redef, import-not-found, unused-ignore]
    import trusted  # type: ignore[no-redef]
    import workspace  # type: ignore[no-redef, import-not-found, unused-ignore]

_SOLVE_GRACE_S = 1.0  # beyond the deadline, for the solve child to stop and answer
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
    preload(bool(config.get("warm", True)), server.work_root)
    _send(proto_out, {"ready": True, "pid": os.getpid()})
    for line in proto_in:
        if not line.strip():
            continue
        request = json.loads(line)

        def notify(event: dict[str, Any], request_id: Any = request["id"]) -> None:
            _send(proto_out, {"id": request_id, **event})

        try:
            result = server.handle(request, notify)
        except Exception as exc:  # noqa: BLE001 - a bug here, not in the program: tell the host
            _send(proto_out, {"id": request.get("id"), "harness_error": f"{type(exc).__name__}: {exc}"})
            continue
        _send(proto_out, {"id": request["id"], "result": result})
    return 0


def preload(warm: bool, work_root: str) -> None:
    """Import what the children use; with ``warm`` also export and solve one tiny model with each
    solver, so forked children start at once. Solvers run single-threaded, so no solver thread
    exists in the process that forks. Everything loaded is then frozen out of the garbage
    collector, so that children do not copy the pages it would touch."""
    import pyomo.environ  # noqa: F401

    if not warm:
        return
    try:
        _warm_up(work_root)
    finally:
        gc.collect()
        gc.freeze()


def _warm_up(work_root: str) -> None:
    export.preload()
    directory = tempfile.mkdtemp(prefix="warmup-", dir=work_root)
    try:
        for source in (_WARMUP_LP, _WARMUP_NL):
            path = os.path.join(directory, export.PROGRAM_NAME)
            with open(path, "w", encoding="utf-8") as f:
                f.write(source)
            exported, files = export.run(path)
            paths = _write_models(directory, exported, files) if exported.get("status") == "exported" else ""
            if isinstance(paths, dict):
                limits = {"mip_gap": 1e-4, "memory_mb": 1024}
                try:
                    trusted.solve(exported, paths, 5.0, limits, time.monotonic() + 10)
                except Exception as exc:  # noqa: BLE001 - e.g. SCIP missing: each run reports it; log it here
                    print(f"worker warm-up: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        sys.modules.pop("program", None)


_WARMUP_LP = """
import pyomo.environ as pyo
def build_model():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(bounds=(0, 1))
    m.c = pyo.Constraint(expr=m.x >= 0.5)
    m.o = pyo.Objective(expr=m.x)
    return m
"""
_WARMUP_NL = _WARMUP_LP.replace("m.x >= 0.5", "m.x * m.x >= 0.25")


def _send(stream: Any, message: dict[str, Any]) -> None:
    stream.write(json.dumps(message).encode() + b"\n")
    stream.flush()


def _harden(uid: int | None) -> None:
    """Drop to an unprivileged uid (when started as root) and forbid ptrace/new privileges."""
    libc = ctypes.CDLL(None, use_errno=True)
    if uid is not None and os.geteuid() == 0:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last_cap = int(f.read())
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
        self.work_root = str(config["work_root"])  # wiped after every run: never a default
        self.keep = set(config.get("keep", []))  # mount points inside the work root

    def handle(self, request: dict[str, Any], notify: Any) -> dict[str, Any]:
        limits = request["limits"]
        start = time.monotonic()
        deadline = start + float(limits["wall_time_s"])
        workdir = tempfile.mkdtemp(prefix="run-", dir=self.work_root)
        try:
            program_path = os.path.join(workdir, export.PROGRAM_NAME)
            with open(program_path, "w", encoding="utf-8") as f:
                f.write(request["program"])
            output_path = os.path.join(workdir, "output.log")
            (exported, files), cpu_used = self._run_program(workdir, program_path, output_path, limits, deadline,
                                                            notify)
            output = workspace.read_text(output_path, 4 * int(limits["output_chars"]))
            self._wipe()  # the solve starts from an empty /tmp, whatever the program left there
            solve_dir = tempfile.mkdtemp(prefix="solve-", dir=self.work_root)
            paths = _write_models(solve_dir, exported, files) if exported.get("status") == "exported" else ""
            if not isinstance(paths, dict):
                result = {"status": "error", "error": paths} if paths else exported
                solver_log = ""
            else:
                result = self._solve(exported, paths, solve_dir, request, limits, deadline, cpu_used)
                solver_log = workspace.read_text(os.path.join(solve_dir, "solver.log"), 8 * int(limits["output_chars"]))
            result["log_tail"] = workspace.log_tail(output, solver_log, int(limits["output_chars"]))
            return result
        finally:
            self._wipe()

    def _run_program(self, workdir: str, program_path: str, output_path: str, limits: dict[str, Any],
                     deadline: float, notify: Any) -> tuple[tuple[dict[str, Any], dict[str, bytes]], float]:
        """Run the program child; its export (or failure) and the CPU seconds it used."""
        receiver, sender = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)  # the kernel stamps each sender's pid
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 70
            try:
                receiver.close()
                code = children.program_child(workdir, program_path, output_path, sender.fileno(), limits)
            except MemoryError:
                code = children.EXIT_MEMORY
            finally:
                os._exit(code)
        sender.close()
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass
        if not self.in_pid_namespace:
            notify({"event": "started", "pgid": pid})
        timed_out = children.wait_until(pid, deadline)
        if timed_out:
            children.kill_group(pid)
            children.kill(pid)
        _, wait_status, usage = os.wait4(pid, 0)
        self._sweep(pid)
        with receiver:
            handed = handover.receive(receiver, pid)
        cpu_used = usage.ru_utime + usage.ru_stime
        failure = children.classify(wait_status, cpu_used, timed_out, limits)
        if failure is not None:
            return (failure, {}), cpu_used
        if handed is None:
            code = os.WEXITSTATUS(wait_status)
            return ({"status": "error", "error": f"the program ended the process (exit code {code}) before its "
                                                 "model was exported"}, {}), cpu_used
        return handed, cpu_used

    def _solve(self, exported: dict[str, Any], paths: dict[str, str], solve_dir: str, request: dict[str, Any],
               limits: dict[str, Any], deadline: float, cpu_used: float) -> dict[str, Any]:
        """Solve the model files at ``paths`` in the solve child."""
        time_limit = float(request.get("time_limit_s") or limits["wall_time_s"])
        cpu_left = max(2.0, float(limits["cpu_time_s"]) - cpu_used)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            os.close(read_end)
            code = 70
            try:
                code = children.solve_child(write_end, exported, paths, solve_dir, time_limit, limits, deadline,
                                            cpu_left)
            finally:
                os._exit(code)
        os.close(write_end)
        data, timed_out = children.read_until(read_end, deadline + _SOLVE_GRACE_S)
        os.close(read_end)
        if timed_out:
            children.kill(pid)
        _, wait_status, usage = os.wait4(pid, 0)
        failure = children.classify(wait_status, usage.ru_utime + usage.ru_stime, timed_out,
                            {**limits, "cpu_time_s": cpu_left}, who="the solver")
        if failure is not None:
            return failure
        try:
            result = json.loads(data)
        except ValueError:
            result = None
        if not isinstance(result, dict):
            return {"status": "error", "error": "the solve process ended without a result"}
        return result

    def _sweep(self, pgid: int) -> None:
        """Kill whatever the program left running (daemons, fork-bomb survivors)."""
        children.kill_group(pgid)
        if self.in_pid_namespace:  # alone in our pid namespace: -1 means "every process but us and init"
            for _ in range(100):
                try:
                    os.kill(-1, signal.SIGKILL)
                except ProcessLookupError:
                    break
                except PermissionError:
                    break
                time.sleep(0.002)

    def _wipe(self) -> None:
        """Empty the work root (keeping its mount points) and, in the sandbox, /dev/shm."""
        workspace.wipe(self.work_root, self.keep)
        if self.in_pid_namespace and os.path.isdir("/dev/shm"):
            workspace.wipe("/dev/shm", set())


def _write_models(directory: str, description: dict[str, Any], files: dict[str, bytes]) -> dict[str, str] | str:
    """Write the handed-over model files to ``directory``: their paths by format, or what is missing."""
    paths = trusted.model_paths(directory, description.get("formats"))
    if not paths or any(fmt not in files for fmt in paths):
        return "the program's process handed over no model file"
    for fmt, path in paths.items():
        with open(path, "wb") as f:
            f.write(files[fmt])
    return paths


if __name__ == "__main__":
    sys.exit(main(sys.argv))
