"""Host side: caps on memory, processes and CPU for a whole run, through a cgroup per worker.

rlimits hold per process: a program that forks gets the memory limit once per child. A cgroup
holds for every process in it together. Each worker (bwrap, the worker, the program and all it
forks, the solve process) gets its own cgroup; a worker runs one program at a time, so the
caps hold for each run as a whole:

* memory: ``Limits.memory_mb`` above what the warm worker itself holds when it is ready
  (measured then), swap included where the kernel accounts it; an OOM kill in the cgroup makes
  the run a ``memory_limit`` failure;
* processes: ``Limits.max_processes`` tasks (threads count), plus a few for the sandbox;
* CPU: ``Limits.cpus`` cores.

cgroup v2 is used when a cgroup with the memory and pids controllers can be created (as root,
or in a delegated subtree), else cgroup v1 (memory and pids hierarchies, cpu when mounted).
Without either, runs fall back to rlimits only and say so in ``SolveResult.isolation``.
"""

from __future__ import annotations

import functools
import itertools
import os
import signal
import time
import uuid
from dataclasses import dataclass, field

from solvers.limits import Limits

_PREFIX = "alphaopt-"
_SANDBOX_TASKS = 8  # bwrap, its init, the worker, the solve process, slack
START_MB = 1024  # memory the worker may use on top of memory_mb while it starts (before its baseline is known)
_counter = itertools.count()


@dataclass(frozen=True)
class IsolationPlan:
    """Where worker cgroups are made; ``kind`` is ``v2``, ``v1`` or ``none`` (with ``reason``)."""

    kind: str
    bases: dict[str, str] = field(default_factory=dict)  # controller -> parent directory ("unified" for v2)
    reason: str = ""

    def describe(self, limits: Limits) -> str:
        """The isolation line of a ``SolveResult``."""
        if self.kind == "none":
            return (f"no cgroup ({self.reason}): memory, process and CPU limits hold per process "
                    "(rlimits), not for the run as a whole")
        cpu = f", {limits.cpus:g} CPU" if self.kind == "v2" or "cpu" in self.bases else ", CPU not capped"
        return (f"cgroup {self.kind} per run: {limits.memory_mb} MB above the preloaded worker, "
                f"{limits.max_processes} processes{cpu}, for all its processes together")


@functools.cache
def resolve_isolation() -> IsolationPlan:
    """Probe once per process: cgroup v2, else v1, else none."""
    mounts = _mounts()
    own = _own_cgroups()
    problems: list[str] = []
    if "cgroup2" in mounts:
        base = _v2_base(mounts["cgroup2"], own.get("", "/"), problems)
        if base:
            return _tidy(IsolationPlan("v2", {"unified": base}))
    v1: dict[str, str] = {c: os.path.join(mounts[c], own.get(c, "/").lstrip("/"))
                          for c in ("memory", "pids", "cpu") if c in mounts}
    if "memory" in v1 and "pids" in v1:
        bases = {c: d for c, d in v1.items() if _can_create(d, problems)}
        if "memory" in bases and "pids" in bases:
            return _tidy(IsolationPlan("v1", bases))
    if not problems:
        problems.append("no cgroup v2 with memory and pids controllers, no cgroup v1 memory and pids hierarchies")
    return IsolationPlan("none", reason="; ".join(dict.fromkeys(problems))[:300])


class WorkerGroup:
    """The cgroup(s) of one worker: created with the limits, removed on ``close``."""

    def __init__(self, plan: IsolationPlan, limits: Limits) -> None:
        self.plan = plan
        self.limits = limits
        name = f"{_PREFIX}{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:6]}"
        self.dirs = {c: os.path.join(base, name) for c, base in plan.bases.items()}
        created = []
        try:
            for path in self.dirs.values():
                os.mkdir(path)
                created.append(path)
            self._write("pids", "pids.max", str(limits.max_processes + _SANDBOX_TASKS))
            self.set_memory((limits.memory_mb + START_MB) << 20)
            self._set_cpu(limits.cpus)
        except OSError:
            for path in created:
                _rmdir(path)
            raise

    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files a new worker writes its pid to (before it execs bwrap)."""
        return [os.path.join(d, "cgroup.procs") for d in self.dirs.values()]

    def fit_to_worker(self) -> None:
        """Set the memory cap to the ready worker's usage plus ``memory_mb``."""
        usage = self._read_int("memory", "memory.current" if self.plan.kind == "v2" else "memory.usage_in_bytes")
        if usage is not None:
            self.set_memory(usage + (self.limits.memory_mb << 20))

    def set_memory(self, limit: int) -> None:
        if self.plan.kind == "v2":
            self._write("memory", "memory.max", str(limit))
            self._write("memory", "memory.swap.max", "0", optional=True)
            return
        swap = os.path.join(self.dirs["memory"], "memory.memsw.limit_in_bytes")
        current = self._read_int("memory", "memory.limit_in_bytes") or 0
        order = ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]  # memsw must stay >= the limit
        for name in (order if limit <= current else order[::-1]):
            if name == order[0] or os.path.exists(swap):
                self._write("memory", name, str(limit), optional=name != order[0])

    def _set_cpu(self, cpus: float) -> None:
        quota = max(1000, int(cpus * 100_000))
        if self.plan.kind == "v2":
            self._write("cpu", "cpu.max", f"{quota} 100000", optional=True)
        elif "cpu" in self.dirs:
            self._write("cpu", "cpu.cfs_period_us", "100000", optional=True)
            self._write("cpu", "cpu.cfs_quota_us", str(quota), optional=True)

    def counters(self) -> tuple[int, int]:
        """(OOM kills, times the process limit refused a fork) so far."""
        if self.plan.kind == "v2":
            oom = _field(self._read("memory", "memory.events"), "oom_kill")
        else:
            oom = _field(self._read("memory", "memory.oom_control"), "oom_kill")
        return oom, _field(self._read("pids", "pids.events"), "max")

    def peak_bytes(self) -> int | None:
        """The most memory the group has held so far (None where the kernel does not say)."""
        name = "memory.peak" if self.plan.kind == "v2" else "memory.max_usage_in_bytes"
        return self._read_int("memory", name)

    def limit_bytes(self) -> int | None:
        return self._read_int("memory", "memory.max" if self.plan.kind == "v2" else "memory.limit_in_bytes")

    def kill_all(self) -> None:
        """SIGKILL every process in the group (the worker's sandbox and all it started)."""
        if self.plan.kind == "v2" and self._write("unified", "cgroup.kill", "1", optional=True):
            return
        for _ in range(20):
            pids = {int(p) for d in self.dirs.values() for p in _read_file(os.path.join(d, "cgroup.procs")).split()}
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.01)

    def close(self) -> None:
        """Kill what is left and remove the group."""
        self.kill_all()
        for path in self.dirs.values():
            _rmdir(path)

    def _dir(self, controller: str) -> str | None:
        return self.dirs.get("unified" if self.plan.kind == "v2" else controller)

    def _read(self, controller: str, name: str) -> str:
        directory = self._dir(controller)
        return _read_file(os.path.join(directory, name)) if directory else ""

    def _read_int(self, controller: str, name: str) -> int | None:
        text = self._read(controller, name).strip()
        return int(text) if text.isdigit() else None

    def _write(self, controller: str, name: str, value: str, *, optional: bool = False) -> bool:
        directory = self._dir(controller)
        if directory is None:
            return False
        try:
            with open(os.path.join(directory, name), "w") as f:
                f.write(value)
            return True
        except OSError:
            if optional:
                return False
            raise


def _v2_base(mount: str, own: str, problems: list[str]) -> str | None:
    """A v2 cgroup whose children get memory and pids: our own, its parent, or the root."""
    own_dir = os.path.join(mount, own.lstrip("/"))
    for candidate in dict.fromkeys([own_dir, os.path.dirname(own_dir.rstrip("/")), mount]):
        if not candidate.startswith(mount) or not os.path.isdir(candidate):
            continue
        available = _read_file(os.path.join(candidate, "cgroup.controllers")).split()
        if not {"memory", "pids"} <= set(available):
            problems.append(f"cgroup v2 at {candidate} offers no memory/pids controllers")
            continue
        enabled = set(_read_file(os.path.join(candidate, "cgroup.subtree_control")).split())
        wanted = [c for c in ("memory", "pids", "cpu") if c in available and c not in enabled]
        try:
            if wanted:
                with open(os.path.join(candidate, "cgroup.subtree_control"), "w") as f:
                    f.write(" ".join(f"+{c}" for c in wanted))
        except OSError as exc:
            problems.append(f"cannot enable controllers in {candidate}: {exc.strerror}")
            continue
        if _can_create(candidate, problems, needs=("memory.max", "pids.max")):
            return candidate
    return None


def _can_create(base: str, problems: list[str], needs: tuple[str, ...] = ()) -> bool:
    probe = os.path.join(base, f"{_PREFIX}probe-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    try:
        os.mkdir(probe)
    except OSError as exc:
        problems.append(f"cannot create a cgroup in {base}: {exc.strerror}")
        return False
    try:
        missing = [n for n in needs if not os.path.exists(os.path.join(probe, n))]
        if missing:
            problems.append(f"a cgroup in {base} lacks {', '.join(missing)}")
        return not missing
    finally:
        _rmdir(probe)


def _tidy(plan: IsolationPlan) -> IsolationPlan:
    """Remove groups left by processes of this project that are gone."""
    for base in plan.bases.values():
        try:
            names = os.listdir(base)
        except OSError:
            continue
        for name in names:
            pid = name[len(_PREFIX):].split("-", 1)[0] if name.startswith(_PREFIX) else ""
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                _rmdir(os.path.join(base, name))
    return plan


def _mounts() -> dict[str, str]:
    """Mount points: ``cgroup2`` and each v1 controller."""
    found: dict[str, str] = {}
    for line in _read_file("/proc/self/mountinfo").splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        if tail[0] == "cgroup2":
            found.setdefault("cgroup2", fields[4])
        elif tail[0] == "cgroup":
            for option in tail[2].split(","):
                if option in ("memory", "pids", "cpu"):
                    found.setdefault(option, fields[4])
    return found


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup per v1 controller, and under ``""`` its v2 cgroup."""
    own: dict[str, str] = {}
    for line in _read_file("/proc/self/cgroup").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in (parts[1].split(",") if parts[1] else [""]):
                own[controller] = parts[2]
    return own


def _field(text: str, key: str) -> int:
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


def _read_file(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _rmdir(path: str) -> None:
    for _ in range(50):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)
