"""Learning on a Dask cluster against one shared library: a PostgreSQL store and a Chroma server.

Run with: alphaopt learn benchmarks/data/nl4opt_train.jsonl --cluster tcp://scheduler:8786

This process adds the training problems to the store, records the run, and sends each problem
to the cluster as one task (``alphaopt.cluster``: Dask schedules them, and runs a task again on
another worker when its worker dies). Each worker builds its tools once (a model client, a
sandboxed solver runner, store and index connections) and learns every problem it is sent with
a fresh ``Learner`` over them, so each problem's token count is its own.

A task first claims its problem in the store, with a lease it renews while it learns
(``LibraryStore.claim_tasks``): two learners working on one library, on this cluster or
another, never learn the same problem; a problem held by a live learner is left to it, and a
claim whose worker died runs out and is taken over. Candidates are verified where they were
found, merges take the store's merge lock (``alphaopt.learning.merge``), and the problem's end
(its ``done`` attempt) and the claim's completion are one transaction. As in a local run, the
first problem that fails stops the run (the others not yet started are cancelled), and a rerun
goes on from what was done.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from alphaopt.agent.retrieval import open_library
from alphaopt.agent.run import solver_runner
from alphaopt.cluster import connect, each_result, worker_cache, worker_id, worker_object
from alphaopt.config import Settings
from alphaopt.errors import ClusterError
from alphaopt.learning.funnel import LearningStopped, LearnSummary
from alphaopt.learning.learn import DONE, LearnConfig, Learner, ended_tasks, solver_of
from alphaopt.learning.ledger import Usage
from alphaopt.llm.client import OpenAIClient
from alphaopt.llm.runlog import open_run_log
from library import ClaimStatus, ConflictError, LibraryStore, Task
from library.index import LibraryIndex

#: The lease on a claimed problem, in seconds; renewed every ``lease_s / 3`` (at most every 5 s).
LEASE_S = 120.0


def require_shared_library(settings: Settings) -> None:
    """A cluster learns into one library that every worker reaches by URL.

    Raises:
        ClusterError: the store or the index is a file in this home.
    """
    missing = [name for name, value in (("ALPHAOPT_LIBRARY_URL", settings.library_url),
                                        ("ALPHAOPT_CHROMA_URL", settings.chroma_url))
               if not value]
    if missing:
        raise ClusterError(f"learning on a cluster needs one library every worker reaches: set {' and '.join(missing)} "
                           "(a PostgreSQL URL for the store, a Chroma server's URL for the index; README: Scale out).")


@dataclass(frozen=True)
class _Job:
    """One training problem sent to the cluster: its task id and its claim key."""

    task_id: str
    key: str


@dataclass
class TaskResult:
    """What a worker did with one problem: its outcome and counts, or why another learner has it."""

    task_id: str
    outcome: str | None = None
    counts: LearnSummary | None = None
    elsewhere: str | None = None


class WorkerTools:
    """What a worker builds once and every problem it learns uses: the store and the index (by
    URL), a model client and a sandboxed solver runner."""

    def __init__(self, settings: Settings, config: LearnConfig) -> None:
        self.settings, self.config = settings, config
        where = f"{socket.gethostname()}:{os.getpid()}"
        self.store = LibraryStore(settings.library_url or "", actor=f"learn on {where}")
        self.index = LibraryIndex(settings.chroma_url or "")
        self.runner = solver_runner(settings)
        self.llm = OpenAIClient(settings, open_run_log(settings))
        self.state: dict[Any, Any] = {}  # what a job keeps on this worker between its tasks (under ``lock``)
        self.lock = threading.Lock()

    def learner(self) -> Learner:
        """A learner for one problem (its own token ledger) over the shared tools."""
        return Learner(self.settings, self.store, self.index, self.llm, self.runner, self.config)

    def close(self) -> None:
        """Stop the solver workers and release the connections."""
        self.runner.close()
        self.index.close()
        self.store.close()


def learn_on_cluster(settings: Settings, items: list[tuple[str, str, str, float]], cluster: str,
                     config: LearnConfig | None = None, *, command: str = "", revisit: Collection[str] = (),
                     threads: int = 1, lease_s: float = LEASE_S,
                     on_task: Callable[[Task, str, LearnSummary], None] | None = None) -> LearnSummary:
    """Learn from ``(dataset, item_id, text, answer)`` items on the cluster at ``cluster`` (an
    address or ``local:N``; ``threads`` per worker there), skipping those done in earlier runs
    except those that ended as ``revisit`` names (see ``Learner.learn``).

    Problems another learner finished or holds count as skipped. ``config.max_tokens`` is
    checked here as results come in: once spent, the problems not yet started are cancelled.

    Raises:
        ClusterError: no shared library, or the cluster cannot be used.
        The first error a problem raised (after the run is recorded as failed).
    """
    require_shared_library(settings)
    config = config or LearnConfig()
    store, index = open_library(settings)  # the starter loaded, if any, before any worker opens it
    with store.merge_lock():  # never rebuild the index under a worker's merge
        index.sync(store)
    index.close()
    try:
        return _learn(settings, store, items, cluster, config, command=command, revisit=revisit, threads=threads,
                      lease_s=lease_s, on_task=on_task)
    finally:
        store.close()


def _learn(settings: Settings, store: LibraryStore, items: list[tuple[str, str, str, float]], cluster: str,
           config: LearnConfig, *, command: str, revisit: Collection[str], threads: int, lease_s: float,
           on_task: Callable[[Task, str, LearnSummary], None] | None) -> LearnSummary:
    run = store.start_run({"command": command, **solver_of(settings), "pid": os.getpid(),
                           "host": socket.gethostname(), "cluster": cluster, "threads": threads,
                           **config.__dict__})
    summary, usage, start = LearnSummary(run_id=run.id), Usage(), time.perf_counter()
    rounds = Counter(a.task_id for a in store.attempts(kind=DONE))  # how often each was learned already
    done = store.done_tasks(DONE) - ended_tasks(store, revisit)
    tasks: dict[str, Task] = {}
    jobs: list[_Job] = []
    for item in items:
        task = store.add_task(*item)
        if task.id in done:
            summary.skipped += 1
        elif task.id not in tasks:
            tasks[task.id] = task
            jobs.append(_Job(task.id, f"learn:{task.id}:{rounds[task.id]}"))
    worker_config = replace(config, max_tokens=None)  # the budget is the run's: counted here
    status = "finished"
    extra: dict[str, str] = {}
    try:
        with connect(cluster, settings, threads_per_worker=threads) as (client, worker_settings), \
                worker_cache(client, "learn", WorkerTools, worker_settings, worker_config) as tools:
            for result in _results(client, jobs, tools, run.id, lease_s):
                if result.elsewhere is not None or result.counts is None:
                    summary.skipped += 1
                    summary.counters["elsewhere"] = summary.counters.get("elsewhere", 0) + 1
                    continue
                summary.absorb(result.counts)
                _add(usage, result.counts)
                summary.seen += 1
                summary.spend(usage, time.perf_counter() - start)
                store.update_run(run.id, counters=summary.as_dict(), tokens=usage.tokens)
                if on_task:
                    on_task(tasks[result.task_id], result.outcome or "", summary)
                if config.max_tokens is not None and usage.tokens >= config.max_tokens:
                    summary.stopped = (f"token budget of {config.max_tokens:,} spent; rerun with a larger "
                                       "--max-tokens to go on")
                    status = "stopped"
                    break
    except KeyboardInterrupt as exc:
        status = "stopped"
        summary.stopped = str(exc) or "interrupted"
        raise LearningStopped(summary.stopped, summary) from exc
    except BaseException as exc:
        status, extra = "failed", {"error": repr(exc)}
        raise
    finally:
        summary.spend(usage, time.perf_counter() - start)
        store.finish_run(run.id, status=status, counters={**summary.as_dict(), **summary.counters, **extra},
                         tokens=usage.tokens)
    return summary


def _results(client: Any, jobs: list[_Job], tools: str, run_id: str, lease_s: float) -> Iterator[TaskResult]:
    """Each problem's result as it comes in; the first exception is raised (closing the stream
    cancels the problems not yet started)."""
    for _, outcome in each_result(client, learn_on_worker, jobs, tools, run_id, lease_s, kind="learn"):
        if isinstance(outcome, BaseException):
            raise outcome
        yield outcome


def _add(usage: Usage, counts: LearnSummary) -> None:
    usage.calls += counts.calls
    usage.cached_calls += counts.cached_calls
    usage.input_tokens += counts.tokens  # the split into prompt and completion stays on the workers
    usage.model_s += counts.model_s
    usage.fresh_output_tokens += counts.fresh_output_tokens


# -- on a worker ----------------------------------------------------------------------------------


def learn_on_worker(job: _Job, tools: str, run_id: str, lease_s: float) -> TaskResult:
    """On a worker: claim the problem, learn from it while renewing the claim, then record its
    end and complete the claim in one transaction. A problem another learner holds or finished
    is left (``elsewhere`` says why); on an error the claim is released and the error raised."""
    kit: WorkerTools = worker_object(tools)
    me, store = worker_id(), kit.store
    why = _claim(store, me, job.key, lease_s)
    if why is not None:
        return TaskResult(job.task_id, elsewhere=why)
    task = store.get_task(job.task_id)
    counts = LearnSummary(run_id=run_id)
    start = time.perf_counter()
    try:
        with _renewing(store, me, job.key, lease_s):
            learner = kit.learner()
            outcome = learner.learn_task(task, run_id, counts)
    except BaseException:
        store.release(me, [job.key])
        raise
    counts.spend(learner.ledger.usage, time.perf_counter() - start)
    try:
        with store.transaction(reason=f"{task.id} learned on {me}"):
            store.record_attempt(task.id, kind=DONE, status=outcome, run_id=run_id)
            store.complete(me, job.key, outcome)
    except ConflictError as exc:  # the lease ran out and another learner took the problem over
        return TaskResult(job.task_id, elsewhere=f"lost the claim: {exc}")
    return TaskResult(job.task_id, outcome=outcome, counts=counts)


def _claim(store: LibraryStore, me: str, key: str, lease_s: float) -> str | None:
    """Claim ``key``; None when claimed, else why it is left to another learner.

    A claim held by someone else is watched: when its lease moves on, its holder is alive and
    the problem is left to it; when it runs out (its worker died), it is taken over. A finished
    one is left at once."""
    deadline = time.monotonic() + 1.5 * lease_s
    seen: str | None = None
    while True:
        if store.claim_tasks(me, [key], 1, lease_s):
            return None
        claim = next((c for c in store.claims() if c.task_id == key), None)
        if claim is not None and claim.status == ClaimStatus.DONE:
            return f"done by {claim.worker_id}"
        if claim is not None and claim.status == ClaimStatus.CLAIMED and not claim.expired:
            if seen is not None and claim.expires_at != seen:
                return f"held by {claim.worker_id}"
            seen = claim.expires_at
        if time.monotonic() > deadline:
            return f"held by {claim.worker_id if claim else 'another learner'}"
        time.sleep(min(1.0, lease_s / 10))


@contextmanager
def _renewing(store: LibraryStore, me: str, key: str, lease_s: float) -> Iterator[None]:
    """Renew this worker's claim on ``key`` in the background while the block runs."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(min(5.0, lease_s / 3)):
            if not store.renew(me, [key], lease_s):
                return  # lost it (it ran out and another learner took it): completing will say so

    thread = threading.Thread(target=renew, name=f"renew {key}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
