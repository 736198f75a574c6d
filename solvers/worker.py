"""Sandbox side: the warm worker (a small fork server).

Started once inside the sandbox as ``python -I -B worker.py '<json config>'``.
It drops privileges, preloads Pyomo, HiGHS and SCIP, announces ``{"ready": true}``
and then serves JSON-line requests on stdin/stdout::

    -> {"id": "...", "program": "...", "time_limit_s": 5.0, "limits": {...}}
    <- {"id": "...", "result": {...SolveResult fields...}}

Each request runs in two forked children, under one wall-clock deadline:

1. the program child gets a fresh work dir, rlimits and its own process group, executes the
   program and hands its model over as sealed memfds on a Unix socket (``export.run`` and
   ``export.send``); then everything the program left running is killed, and only the last
   message whose kernel-stamped sender pid is the program child's own is taken;
2. the solve child, forked from this process (which never runs program code), solves, checks
   and renders those model files (``trusted.solve``) and sends the result back through a
   pipe. Nothing the program wrote to disk is read, except its output for the log tail.

Afterwards the whole work root (the sandbox's ``/tmp``) and ``/dev/shm`` are wiped, so every
program starts with an empty ``/tmp``. Only the standard library is used here, plus the
sibling modules; this file never imports the rest of the project.
"""

from __future__ import annotations

import array
import ctypes
import fcntl
import gc
import json
import os
import resource
import select
import shutil
import signal
import socket
import stat
import struct
import sys
import tempfile
import time
from typing import Any

if __package__:
    from solvers import export, trusted
else:  # run as a script inside the sandbox: the sibling modules are on sys.path, used top-level
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.modules["solvers"] = None  # type: ignore[assignment]  # never the host package, even where importable
    import export  # type: ignore[no-redef]
    import trusted  # type: ignore[no-redef]

_EXIT_MEMORY = 71  # child could not even report a MemoryError
_MAX_EXPORT_BYTES = 64 << 20
_MAX_RESULT_BYTES = 32 << 20
_SOLVE_GRACE_S = 1.0  # beyond the deadline, for the solve child to stop and answer
_PR_SET_DUMPABLE, _PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS = 4, 24, 38
_FAILURES = {"error", "invalid_program", "memory_limit", "output_limit", "killed"}  # what a program may report


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
            output = _read_text(output_path, 4 * int(limits["output_chars"]))
            self._wipe()  # the solve starts from an empty /tmp, whatever the program left there
            solve_dir = tempfile.mkdtemp(prefix="solve-", dir=self.work_root)
            paths = _write_models(solve_dir, exported, files) if exported.get("status") == "exported" else ""
            if not isinstance(paths, dict):
                result = {"status": "error", "error": paths} if paths else exported
                solver_log = ""
            else:
                result = self._solve(exported, paths, solve_dir, request, limits, deadline, cpu_used)
                solver_log = _read_text(os.path.join(solve_dir, "solver.log"), 8 * int(limits["output_chars"]))
            result["log_tail"] = _log_tail(output, solver_log, int(limits["output_chars"]))
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
                code = _program_child(workdir, program_path, output_path, sender.fileno(), limits)
            except MemoryError:
                code = _EXIT_MEMORY
            finally:
                os._exit(code)
        sender.close()
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass
        if not self.in_pid_namespace:
            notify({"event": "started", "pgid": pid})
        timed_out = _wait_until(pid, deadline)
        if timed_out:
            _kill_group(pid)
            _kill(pid)
        _, wait_status, usage = os.wait4(pid, 0)
        self._sweep(pid)
        with receiver:
            handed = _receive(receiver, pid)
        cpu_used = usage.ru_utime + usage.ru_stime
        failure = _classify(wait_status, cpu_used, timed_out, limits)
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
                code = _solve_child(write_end, exported, paths, solve_dir, time_limit, limits, deadline, cpu_left)
            finally:
                os._exit(code)
        os.close(write_end)
        data, timed_out = _read_until(read_end, deadline + _SOLVE_GRACE_S)
        os.close(read_end)
        if timed_out:
            _kill(pid)
        _, wait_status, usage = os.wait4(pid, 0)
        failure = _classify(wait_status, usage.ru_utime + usage.ru_stime, timed_out,
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

    def _wipe(self) -> None:
        """Empty the work root (keeping its mount points) and, in the sandbox, /dev/shm."""
        _wipe(self.work_root, self.keep)
        if self.in_pid_namespace and os.path.isdir("/dev/shm"):
            _wipe("/dev/shm", set())


def _program_child(workdir: str, program_path: str, output_path: str, sock_fd: int, limits: dict[str, Any]) -> int:
    os.setpgid(0, 0)
    out = os.open(output_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)
    sock_fd = os.dup2(sock_fd, 3)
    os.closerange(4, os.sysconf("SC_OPEN_MAX"))  # the protocol pipes must be out of the program's reach
    _limit(limits, float(limits["cpu_time_s"]))
    os.chdir(workdir)
    os.umask(0o077)
    os.environ["HOME"] = os.environ["TMPDIR"] = os.environ["PWD"] = workdir
    tempfile.tempdir = workdir
    description, files = export.run(program_path)
    sys.stdout.flush()
    sys.stderr.flush()
    export.send(sock_fd, description, files)
    return 0


def _solve_child(write_end: int, exported: dict[str, Any], paths: dict[str, str], solve_dir: str,
                 time_limit: float, limits: dict[str, Any], deadline: float, cpu_left: float) -> int:
    log = os.open(os.path.join(solve_dir, "solver.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.closerange(3, write_end)
    os.closerange(write_end + 1, os.sysconf("SC_OPEN_MAX"))
    _limit(limits, cpu_left)
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


def _limit(limits: dict[str, Any], cpu_s: float) -> None:
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


def _receive(sock: socket.socket, pid: int) -> tuple[dict[str, Any], dict[str, bytes]] | None:
    """The last hand-over the process ``pid`` sent (see ``export.send``), or None.

    Messages from any other process (their kernel-stamped pid differs) are dropped, and so is
    anything not in a sealed memfd: nothing can have changed it since it was sent.
    """
    sock.setblocking(False)
    chosen: tuple[bytes, list[int]] | None = None
    space = socket.CMSG_SPACE(struct.calcsize("iII")) + socket.CMSG_SPACE(8 * array.array("i").itemsize)
    while True:
        try:
            message, ancillary, flags, _ = sock.recvmsg(4096, space)
        except OSError:
            break
        if not message and not ancillary:
            break
        sender, fds = None, []
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                sender = struct.unpack("iII", data[:struct.calcsize("iII")])[0]
            elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += array.array("i", data[:len(data) - len(data) % array.array("i").itemsize]).tolist()
        if sender == pid and not flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC):
            if chosen is not None:
                _close(chosen[1])
            chosen = (message, fds)
        else:
            _close(fds)
    if chosen is None:
        return None
    message, fds = chosen
    try:
        names = json.loads(message)
        if not isinstance(names, list) or len(names) != len(fds):
            return None
        contents = {str(name): _sealed(fd) for name, fd in zip(names, fds, strict=True)}
    except ValueError:
        return None
    finally:
        _close(fds)
    try:
        description = json.loads(contents.pop(export.DESCRIPTION) or b"")
    except (KeyError, ValueError):
        return None
    if not isinstance(description, dict):
        return None
    if description.get("status") != "exported":
        status = description.get("status") if description.get("status") in _FAILURES else "error"
        return {"status": status, "error": str(description.get("error") or "the program failed")}, {}
    files = {name[len("model."):]: data for name, data in contents.items()
             if name in ("model.lp", "model.nl") and data is not None}
    return description, files


def _sealed(fd: int) -> bytes | None:
    """The content of a sealed memfd (write, shrink and grow sealed), or None."""
    try:
        if fcntl.fcntl(fd, fcntl.F_GET_SEALS) & export.SEALED != export.SEALED:
            return None
        size = os.fstat(fd).st_size
        if size > _MAX_EXPORT_BYTES:
            return None
        return os.pread(fd, size, 0) if size else b""
    except OSError:
        return None


def _close(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _write_models(directory: str, description: dict[str, Any], files: dict[str, bytes]) -> dict[str, str] | str:
    """Write the handed-over model files to ``directory``: their paths by format, or what is missing."""
    paths = trusted.model_paths(directory, description.get("formats"))
    if not paths or any(fmt not in files for fmt in paths):
        return "the program's process handed over no model file"
    for fmt, path in paths.items():
        with open(path, "wb") as f:
            f.write(files[fmt])
    return paths


def _read_text(path: str, chars: int) -> str:
    """The last ``chars`` characters of a log file (marked when cut); never through a link, FIFO or device."""
    if chars <= 0:
        return ""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        size = os.lseek(fd, 0, os.SEEK_END)
        os.lseek(fd, max(0, size - chars), os.SEEK_SET)
        text = os.read(fd, chars).decode("utf-8", "replace")
    finally:
        os.close(fd)
    return "[... output truncated ...]\n" + text if size > chars else text


def _read_until(fd: int, deadline: float) -> tuple[bytes, bool]:
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
        if size > _MAX_RESULT_BYTES:
            return b"", False
        chunks.append(chunk)


def _wipe(root: str, keep: set[str]) -> None:
    """Remove everything below ``root`` except the paths in ``keep`` (and the directories leading to them)."""
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in entries:
        path = entry.path
        if path in keep:
            continue
        if any(k.startswith(path + "/") for k in keep):
            _wipe(path, keep)
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                os.unlink(path)
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        if os.path.lexists(path):  # the program locked a directory (chmod 000): open everything, then retry
            for _ in _walk_opening(path):
                pass
            shutil.rmtree(path, ignore_errors=True)


def _walk_opening(path: str) -> Any:
    """``os.walk`` top-down that opens (chmod 700) each directory before descending into it."""
    try:
        os.chmod(path, 0o700)
    except OSError:
        pass
    for dirpath, dirnames, files in os.walk(path):
        for name in dirnames:
            try:
                os.chmod(os.path.join(dirpath, name), 0o700, follow_symlinks=False)
            except OSError:
                pass
        yield dirpath, dirnames, files


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


def _classify(wait_status: int, cpu_used: float, timed_out: bool, limits: dict[str, Any],
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
    if os.WEXITSTATUS(wait_status) == _EXIT_MEMORY:
        return {"status": "memory_limit", "error": f"MemoryError: {who} exceeded its memory limit"}
    return None


def _log_tail(output: str, solver_log: str, chars: int) -> str:
    if chars <= 0:
        return ""
    parts = [p for p in (output.rstrip(), solver_log.rstrip()) if p]
    text = "\n--- solver log ---\n".join(parts) if len(parts) == 2 else (parts[0] if parts else "")
    return text if len(text) <= chars else text[-chars:]


if __name__ == "__main__":
    sys.exit(main(sys.argv))
