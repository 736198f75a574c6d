"""Running alphaopt's work on a Dask cluster: connecting to one, an object each worker builds once
and reuses, and tasks whose results come back as they finish.

Run with: alphaopt batch problems.jsonl -o out.jsonl --cluster local:4   (or --cluster tcp://host:8786)

Dask does the scheduling: it sends each task to a free worker thread and, when a worker dies
mid-task, runs the task again on another one (``distributed.scheduler.allowed-failures`` times,
3 by default; then the task fails with ``KilledWorker``, which becomes that item's failure).
This module knows nothing of what the tasks do: ``alphaopt.api`` sends solves and
``alphaopt.learning.cluster`` sends training problems; each builds its per-worker object (an
``Agent``, a ``Learner``) through a ``WorkerCache``.

An address is a scheduler's (``tcp://host:8786``, started with ``dask scheduler``; workers join
it with ``dask worker tcp://host:8786``) or ``local:N``: a LocalCluster of N worker processes on
this machine, started for the run and stopped after it. With the embedded model each worker
process loads its own copy; on ``local:N`` each copy gets ``n_threads`` (default: this machine's
cores divided by N), and a cluster whose workers × threads would exceed the cores is refused.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker
from distributed.scheduler import KilledWorker

from alphaopt.config import Settings
from alphaopt.errors import ClusterError

LOCAL = "local:"


def local_workers(address: str) -> int | None:
    """N for ``local:N``; None for a scheduler address.

    Raises:
        ClusterError: ``local:`` without a whole number of workers of at least one.
    """
    if not address.startswith(LOCAL):
        return None
    count = address.removeprefix(LOCAL)
    if not count.isdigit() or int(count) < 1:
        raise ClusterError(f"--cluster {address!r}: give local:N with N workers (e.g. local:4), "
                           "or a scheduler address such as tcp://127.0.0.1:8786")
    return int(count)


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def fit_embedded(settings: Settings, workers: int, threads_per_worker: int, available: int) -> Settings:
    """The settings for ``workers`` local worker processes: with the embedded model, each loads its
    own copy with ``n_threads`` (the setting, or ``available // workers``).

    Raises:
        ClusterError: more than one thread per worker (the embedded model answers one request at
            a time), or workers × model threads exceed the ``available`` cores.
    """
    if not settings.embedded:
        return settings
    if threads_per_worker > 1:
        raise ClusterError(f"{threads_per_worker} threads per worker with the embedded model: each worker's copy "
                           "answers one request at a time, so give each worker one thread (--concurrency 1), or "
                           "point the workers at an endpoint (--base-url) that serves several requests.")
    threads = settings.experimental.n_threads or available // workers
    if threads < 1 or workers * threads > available:
        fits = max(1, available // max(1, threads))
        raise ClusterError(
            f"local:{workers} with the embedded model needs {workers} × {max(1, threads)} model threads = "
            f"{workers * max(1, threads)} cores; this machine has {available}. Use local:{fits} or fewer, lower "
            "ALPHAOPT_EXPERIMENTAL__N_THREADS, or point the workers at an endpoint (--base-url).")
    return settings.with_experimental(n_threads=threads)


@contextmanager
def connect(address: str, settings: Settings, *, threads_per_worker: int = 1) -> Iterator[tuple[Client, Settings]]:
    """A client of the cluster at ``address``, and the settings its workers should use.

    ``local:N`` starts N worker processes with ``threads_per_worker`` threads each and stops
    them at the end; a scheduler address connects to a running cluster (whose workers chose
    their own thread count).

    Raises:
        ClusterError: a bad address, a scheduler that does not answer, or an embedded model that
            does not fit this machine (see ``fit_embedded``).
    """
    workers = local_workers(address)
    if workers is None:
        try:
            client = Client(address, timeout="20s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise ClusterError(f"Cannot reach the Dask scheduler at {address!r}: {exc}. Start one with "
                               "`dask scheduler` and workers with `dask worker <address>`, or use "
                               "--cluster local:N for workers on this machine.") from exc
        with client:
            yield client, settings
        return
    fitted = fit_embedded(settings, workers, threads_per_worker, cores())
    with LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client, fitted


class WorkerCache(WorkerPlugin):
    """One object per worker, built by ``factory(*args)`` when a task on that worker first asks for
    it (``worker_object(name)``) and reused by every later task there, whatever thread runs it.
    Its ``close()`` runs when the run unregisters the plugin or the worker stops; a worker that
    joins (or restarts after a crash) mid-run gets the plugin too and builds its own."""

    def __init__(self, name: str, factory: Callable[..., Any], *args: Any) -> None:
        self.name = name
        self.factory = factory
        self.args = args
        self._value: Any = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "factory": self.factory, "args": self.args}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _value=None, _lock=threading.Lock())

    def setup(self, worker: Any) -> None:
        """Nothing is built until a task asks."""

    def get(self) -> Any:
        """The worker's object, built at the first call."""
        with self._lock:
            if self._value is None:
                self._value = self.factory(*self.args)
            return self._value

    def teardown(self, worker: Any) -> None:
        """Close the object, if one was built."""
        with self._lock:
            value, self._value = self._value, None
        close = getattr(value, "close", None)
        if close is not None:
            close()


def worker_object(name: str) -> Any:
    """In a task: this worker's object of the ``WorkerCache`` registered as ``name``."""
    cache: WorkerCache = get_worker().plugins[name]  # type: ignore[assignment]  # registered as one
    return cache.get()


def worker_id() -> str:
    """In a task: who is working, for the library's claims (host, process and thread)."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


@contextmanager
def worker_cache(client: Client, kind: str, factory: Callable[..., Any], *args: Any) -> Iterator[str]:
    """Register a ``WorkerCache`` of ``factory(*args)`` on every worker for the block; yields its name.

    At the end the plugin is unregistered, so every worker closes what it built (its sandboxed
    solver processes, its model copy, its database connections).
    """
    name = f"alphaopt-{kind}-{uuid.uuid4().hex[:8]}"
    client.register_plugin(WorkerCache(name, factory, *args), name=name)
    try:
        yield name
    finally:
        if client.status == "running":
            client.unregister_worker_plugin(name)


def each_result(client: Client, fn: Callable[..., Any], items: Sequence[Any], *args: Any,
                kind: str = "task") -> Iterator[tuple[int, Any]]:
    """Run ``fn(item, *args)`` on the cluster for every item; yield ``(index, result)`` as each
    finishes, in any order. A task that raised yields its exception; one that lost its worker
    more often than Dask retries yields a ``ClusterError``. Closing the iterator early (an error
    or Ctrl-C in the caller) cancels the tasks not yet finished."""
    token = uuid.uuid4().hex[:8]
    futures = {client.submit(fn, item, *args, key=f"{kind}-{token}-{n}", pure=False): n
               for n, item in enumerate(items)}
    try:
        for future in as_completed(futures):
            n = futures.pop(future)
            yield n, _outcome(future)
            future.release()
    finally:
        if futures:
            client.cancel(list(futures))


def _outcome(future: Any) -> Any:
    """A finished future's result, or its exception as a value."""
    if future.status == "finished":
        return future.result()
    if future.status == "cancelled":
        return ClusterError("the cluster cancelled this item (its scheduler restarted or the client lost it); "
                            "rerun the same command to retry it")
    exc = future.exception()
    if isinstance(exc, KilledWorker):
        return ClusterError(f"every worker that ran this item died ({exc}); it is retried when the same command "
                            "runs again (check the workers' memory: dask worker --memory-limit)")
    return exc
