"""Host side: run programs in sandboxed workers and turn their answers into ``SolveResult``."""

from __future__ import annotations

import functools
import queue
import threading
import time
import uuid
import weakref
from typing import Any

from pydantic import ValidationError

from solvers.isolation import IsolationPlan, resolve_isolation
from solvers.limits import Limits
from solvers.result import SolveResult, SolverHarnessError, SolveStatus
from solvers.sandbox import BwrapMode, SandboxPlan, resolve_sandbox
from solvers.worker_client import WorkerLost, WorkerProcess, WorkerTimeout

START_TIMEOUT_S = 60.0  # worker start-up: interpreter, Pyomo and solver imports, warm-up solves
GRACE_S = 5.0  # beyond the wall limit, for the worker to kill, clean up and answer
MAX_ERROR_CHARS = 8000


class _Slot:
    """A place for one worker; a run holds the slot for its whole duration."""

    def __init__(self) -> None:
        self.worker: WorkerProcess | None = None


class SolverRunner:
    """Runs programs in warm sandboxed workers; thread-safe; a context manager.

    ``workers`` is the number of programs that may run at once (each in its own
    sandboxed worker). With ``warm=False`` every run starts a fresh sandboxed
    process (the cold path, as ``run_program``).
    """

    def __init__(self, limits: Limits | None = None, workers: int = 1, use_bwrap: BwrapMode = "auto",
                 warm: bool = True) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        limits = limits or Limits()
        self.limits = limits
        self.warm = warm
        self.plan = resolve_sandbox(use_bwrap)
        self.isolation_plan = resolve_isolation()
        self._slots = [_Slot() for _ in range(workers)]
        self._free: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        for slot in self._slots:
            if warm:
                slot.worker = self._start()  # start now, wait on first use
            self._free.put(slot)
        self._finalizer = weakref.finalize(self, _kill_slots, self._slots)

    @property
    def sandbox(self) -> str:
        """How programs are isolated (also in every ``SolveResult.sandbox``)."""
        return self.plan.description

    @property
    def isolation(self) -> str:
        """The caps for a run as a whole (also in every ``SolveResult.isolation``)."""
        return self.isolation_plan.describe(self.limits)

    def run(self, program: str, *, time_limit_s: float | None = None) -> SolveResult:
        """Run one program (source text defining ``build_model()``) and solve its model.

        ``time_limit_s`` is the solver's own time limit (it stops with its incumbent:
        ``feasible`` or ``time_limit``); by default 80% of the wall/CPU limit.
        Blocks while all workers are busy.
        """
        if self._closed:
            raise SolverHarnessError("the SolverRunner is closed")
        slot = self._free.get()
        try:
            start = time.monotonic()
            payload = _payload(program, self.limits, time_limit_s)
            if self.warm:
                data, isolation = self._run_warm(slot, payload)
            else:
                data, isolation = _run_once(self.plan, self.isolation_plan, self.limits, payload, warm=False)
            return _to_result(data, self.plan.description, isolation, time.monotonic() - start)
        finally:
            self._free.put(slot)

    def _run_warm(self, slot: _Slot, payload: dict[str, Any]) -> tuple[dict[str, Any], str]:
        worker = self._ready_worker(slot)
        data = _request(worker, payload, self.limits)
        if data.pop("_lost", False):
            self._replace(slot)
            data["error"] += "; a fresh worker was started"
        return data, worker.isolation

    def _start(self) -> WorkerProcess:
        return WorkerProcess(self.plan, self.limits, warm=True, isolation=self.isolation_plan)

    def _ready_worker(self, slot: _Slot) -> WorkerProcess:
        problem = ""
        for _ in range(2):
            worker = slot.worker
            if worker is None or not worker.alive():
                worker = self._replace(slot)
            if worker is None:
                raise SolverHarnessError("the SolverRunner is closed")
            try:
                worker.ensure_ready(START_TIMEOUT_S)
                return worker
            except (WorkerLost, WorkerTimeout) as exc:
                problem = str(exc) or type(exc).__name__
                worker.kill()
                slot.worker = None
        raise SolverHarnessError(f"the sandboxed solver worker failed to start: {problem}")

    def _replace(self, slot: _Slot) -> WorkerProcess | None:
        """Kill the slot's worker (if any) and start a fresh one, unless the runner is closed."""
        if slot.worker is not None:
            slot.worker.kill()
            slot.worker = None
        with self._lock:
            if not self._closed:
                slot.worker = self._start()
            return slot.worker

    def close(self) -> None:
        """Stop all workers (idempotent)."""
        with self._lock:
            self._closed = True
        self._finalizer()

    def __enter__(self) -> SolverRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_program(program: str, limits: Limits | None = None, use_bwrap: BwrapMode = "auto",
                *, time_limit_s: float | None = None) -> SolveResult:
    """Cold one-shot path: a fresh sandboxed process for this one program."""
    limits = limits or Limits()
    plan = resolve_sandbox(use_bwrap)
    start = time.monotonic()
    data, isolation = _run_once(plan, resolve_isolation(), limits, _payload(program, limits, time_limit_s), warm=False)
    return _to_result(data, plan.description, isolation, time.monotonic() - start)


@functools.cache
def highs_available() -> bool:
    """True when HiGHS (highspy) and Pyomo are installed and usable (probed once)."""
    from importlib.util import find_spec

    from solvers.backends import highs_available as probe

    return find_spec("pyomo") is not None and probe()


@functools.cache
def scip_available() -> bool:
    """True when SCIP (pyscipopt) is installed and usable (probed once)."""
    from solvers.backends import scip_available as probe

    return probe()


def _run_once(plan: SandboxPlan, isolation: IsolationPlan, limits: Limits, payload: dict[str, Any], *,
              warm: bool) -> tuple[dict[str, Any], str]:
    worker = WorkerProcess(plan, limits, warm=warm, isolation=isolation)
    try:
        try:
            worker.ensure_ready(START_TIMEOUT_S)
        except (WorkerLost, WorkerTimeout) as exc:
            raise SolverHarnessError(f"the sandboxed solver process failed to start: {exc}") from exc
        data = _request(worker, payload, limits)
        data.pop("_lost", None)
        return data, worker.isolation
    finally:
        worker.kill()


def _request(worker: WorkerProcess, payload: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """The worker's answer; a lost or silent worker (``"_lost": True``) and the cgroup's OOM kills
    and refused forks are turned into statuses here."""
    oom_before, forks_before = worker.counters()
    try:
        data = worker.request(payload, limits.wall_time_s + GRACE_S)
    except WorkerTimeout:
        data = {"status": "timeout", "_lost": True,
                "error": f"the worker did not answer within the wall-clock limit ({limits.wall_time_s} s)"}
    except WorkerLost as exc:
        data = {"status": "killed", "_lost": True,
                "error": f"the sandbox worker died while running the program ({exc})"}
    oom, forks = worker.counters()
    if oom > oom_before:
        lost = data.get("_lost", False)
        data = {"status": "memory_limit", "_lost": lost, "log_tail": data.get("log_tail", ""),
                "error": f"the run exceeded its memory limit ({limits.memory_mb} MB for all its processes "
                         f"together); the kernel killed {oom - oom_before} of its processes"}
    elif forks > forks_before and data.get("status") in ("killed", "error", "timeout"):
        data["error"] = (data.get("error") or "") + (f"\nthe run reached its process limit "
                                                     f"({limits.max_processes} processes together)")
    return data


def _payload(program: str, limits: Limits, time_limit_s: float | None) -> dict[str, Any]:
    if time_limit_s is None:  # leave the solver room to stop cleanly (with its incumbent) before the kill
        time_limit_s = 0.8 * min(limits.wall_time_s, limits.cpu_time_s)
    return {"id": uuid.uuid4().hex, "program": program, "time_limit_s": time_limit_s,
            "limits": limits.model_dump()}


def _to_result(data: dict[str, Any], sandbox: str, isolation: str, wall_time_s: float) -> SolveResult:
    sandbox = f"{sandbox}; {isolation}"
    data = {**data, "sandbox": sandbox, "isolation": isolation, "wall_time_s": wall_time_s,
            "status": SolveStatus.parse(data.get("status"))}
    if isinstance(data.get("error"), str) and len(data["error"]) > MAX_ERROR_CHARS:
        half = MAX_ERROR_CHARS // 2
        data["error"] = data["error"][:half] + "\n[... truncated ...]\n" + data["error"][-half:]
    try:
        return SolveResult.model_validate(data)
    except ValidationError as exc:
        return SolveResult(status=SolveStatus.ERROR, sandbox=sandbox, isolation=isolation, wall_time_s=wall_time_s,
                           error=f"the sandbox returned a malformed result: {exc}"[:MAX_ERROR_CHARS])


def _kill_slots(slots: list[_Slot]) -> None:
    for slot in slots:
        if slot.worker is not None:
            slot.worker.kill()
            slot.worker = None
