"""Host side of one sandboxed worker: the process, its JSON-line pipes, and its cleanup."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any

from solvers.isolation import IsolationPlan, WorkerGroup
from solvers.limits import Limits
from solvers.result import SolverHarnessError
from solvers.sandbox import SandboxPlan, allocate_uid, release_uid

_MAX_LINE_BYTES = 64 << 20
# Joins the cgroup(s) named before "--", then becomes the command after it: the worker and all it
# starts are in the group from their first instruction.
_JOIN_CGROUP = 'for f; do [ "$f" = -- ] && break; echo $$ > "$f" || exit 97; shift; done; shift; exec "$@"'


class WorkerLost(Exception):
    """The worker process ended (or broke the protocol)."""


class WorkerTimeout(Exception):
    """The worker did not answer in time."""


class WorkerProcess:
    """One sandboxed worker process and its JSON-line pipes."""

    def __init__(self, plan: SandboxPlan, limits: Limits, *, warm: bool, isolation: IsolationPlan) -> None:
        self.plan = plan
        self.uid = allocate_uid() if plan.privileged else None
        self.host_dir = tempfile.mkdtemp(prefix="alphaopt-worker-") if plan.kind == "none" else None
        argv, env, cwd = plan.worker_command(warm=warm, tmp_mb=64 + 4 * limits.file_size_mb,
                                             host_workdir=self.host_dir or "/", uid=self.uid)
        self.group: WorkerGroup | None = None
        self.isolation = isolation.describe(limits)
        if isolation.kind != "none":
            try:
                self.group = WorkerGroup(isolation, limits)
                argv = ["/bin/sh", "-c", _JOIN_CGROUP, "sh", *self.group.procs_files(), "--", *argv]
            except OSError as exc:
                self.isolation = IsolationPlan("none", reason=f"creating one failed: {exc}").describe(limits)
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - open as long as the worker lives
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                         env=env, cwd=cwd, start_new_session=True, close_fds=True)
        except OSError as exc:
            self.stderr.close()
            release_uid(self.uid)
            if self.host_dir:
                shutil.rmtree(self.host_dir, ignore_errors=True)
            if self.group is not None:
                self.group.close()
            raise SolverHarnessError(f"cannot start the solver worker ({argv[0]}): {exc}") from exc
        self.ready = False
        self._buffer = b""
        self._child_pgid: int | None = None  # fallback mode only: the program's process group

    def ensure_ready(self, timeout: float) -> None:
        if self.ready:
            return
        message = self._read(time.monotonic() + timeout)
        if not message.get("ready"):
            raise WorkerLost(f"unexpected first message from the worker: {str(message)[:200]}")
        self.ready = True
        if self.group is not None:
            self.group.fit_to_worker()

    def counters(self) -> tuple[int, int]:
        """(OOM kills, refused forks) in the worker's cgroup so far; (0, 0) without one."""
        return self.group.counters() if self.group is not None else (0, 0)

    def request(self, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(payload).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise WorkerLost(f"cannot write to the worker: {exc}") from exc
        deadline = time.monotonic() + timeout
        while True:
            message = self._read(deadline)
            if message.get("id") != payload["id"]:
                raise WorkerLost(f"protocol error: unexpected message {str(message)[:200]}")
            if message.get("event") == "started":
                self._child_pgid = int(message["pgid"])
                continue
            self._child_pgid = None
            if "harness_error" in message:
                raise SolverHarnessError(f"the solver worker failed: {message['harness_error']}")
            return dict(message["result"])

    def _read(self, deadline: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerTimeout()
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise WorkerLost(self._death_note())
            self._buffer += chunk
            if len(self._buffer) > _MAX_LINE_BYTES:
                raise WorkerLost("protocol error: oversized message")
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise WorkerLost(f"protocol error: {exc}") from exc
        if not isinstance(message, dict):
            raise WorkerLost("protocol error: message is not an object")
        return message

    def _death_note(self) -> str:
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
        self.stderr.seek(0)
        tail = self.stderr.read()[-600:].decode("utf-8", "replace").strip()
        return f"worker exited (code {code})" + (f": {tail}" if tail else "")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """Kill the worker and everything in its sandbox; remove its files and its cgroup."""
        if self.group is not None:
            self.group.kill_all()
        for pgid in (self.proc.pid, self._child_pgid):
            if pgid:
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdin, self.proc.stdout, self.stderr):
            try:
                stream.close()  # type: ignore[union-attr]
            except OSError:
                pass
        if self.host_dir:
            shutil.rmtree(self.host_dir, ignore_errors=True)
        if self.group is not None:
            self.group.close()
            self.group = None
        release_uid(self.uid)
        self.uid = None
