"""Leased task claims, the merge lock and the evolve lock, for several workers learning against
one library.

A mixin of :class:`library.store.LibraryStore`. A worker claims tasks for a lease; it renews
the lease while it works and completes each task at the end. A worker that dies stops renewing,
so its claims expire and other workers can claim them; a completed task is never handed out
again. Leases run on the database's clock (PostgreSQL's ``clock_timestamp()``; SQLite files
are local, so the local clock), never on the workers' own clocks.

Claims are coordination, not library content: they make no library version.
"""

from __future__ import annotations

import fcntl
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from library.core import StoreCore
from library.db import now_iso
from library.errors import ConflictError, InvalidInsightError, LockTimeoutError
from library.models import Claim, ClaimStatus
from library.tables import ClaimRow

#: The lease a claim gets unless the caller names one, in seconds.
DEFAULT_LEASE_S = 600.0
_CLAIM_LOCK = 0x616F_636C  # PostgreSQL advisory lock classes ("aocl", "aoml", "aoel")
_LOCKS = {"merge": 0x616F_6D6C, "evolve": 0x616F_656C}
_CHUNK = 500
_POLL_S = 0.05


def _key32(value: str) -> int:
    """A signed 32-bit key for PostgreSQL's two-key advisory locks."""
    return zlib.crc32(value.encode()) - 2**31


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def _claim(row: ClaimRow, now: float) -> Claim:
    return Claim(task_id=row.task_id, worker_id=row.worker_id, status=ClaimStatus(row.status),
                 expires_at=_iso(row.lease_until), expired=row.lease_until < now, attempts=row.attempts,
                 outcome=row.outcome, claimed_at=row.claimed_at, finished_at=row.finished_at)


def _check_lease(lease_s: float) -> None:
    if not lease_s > 0:
        raise InvalidInsightError(f"lease_s must be a positive number of seconds, got {lease_s!r}; "
                                  "give the time a task takes with a margin, and renew() before it runs out")


class Claims(StoreCore):
    """Task claims, the merge lock and the evolve lock (mixed into ``LibraryStore``)."""

    def __init__(self, location: str | Path, *, actor: str | None = None) -> None:
        super().__init__(location, actor=actor)
        self._lock_held = {name: ContextVar[bool](f"{name}_lock_{id(self)}", default=False) for name in _LOCKS}
        self._memory_locks = {name: threading.Lock() for name in _LOCKS}

    def _postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def _now(self, s: Session) -> float:
        if self._postgres():
            return float(s.execute(text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")).scalar_one())
        return time.time()

    def _insert_claim(self, s: Session, values: dict[str, Any]) -> bool:
        """Insert a claim row unless one exists (or, on PostgreSQL, another worker is inserting it)."""
        if self._postgres():
            free = s.execute(text("SELECT pg_try_advisory_xact_lock(:a, :b)"),
                             {"a": _CLAIM_LOCK, "b": _key32(values["task_id"])}).scalar_one()
            if not free:  # another transaction is claiming this key right now: skip it, as SKIP LOCKED does
                return False
            statement: Any = pg_insert(ClaimRow).values(**values).on_conflict_do_nothing(index_elements=["task_id"])
        else:
            statement = sqlite_insert(ClaimRow).values(**values).on_conflict_do_nothing(index_elements=["task_id"])
        return s.execute(statement.returning(ClaimRow.task_id)).first() is not None

    def claim_tasks(self, worker_id: str, candidates: Iterable[str], n: int = 1,
                    lease_s: float = DEFAULT_LEASE_S) -> list[str]:
        """Claim up to ``n`` of ``candidates`` for ``worker_id``, atomically, for ``lease_s`` seconds.

        A candidate is claimable when nobody claimed it, its claim was released, or its lease
        ran out (its worker died or stalled). A task with a live lease is not, even for the
        worker that holds it (a restarted worker finds its own with ``claims(worker_id=...)``
        and renews them). A completed task is never claimable again. Candidates are taken in
        the given order; on PostgreSQL a candidate that another worker is claiming at this
        moment is skipped (``FOR UPDATE SKIP LOCKED``, and a transaction-level advisory lock
        per new key), so concurrent workers get disjoint tasks without waiting for each other.
        On SQLite the claim runs in one write transaction (``BEGIN IMMEDIATE``).

        Args:
            worker_id: A stable name for the worker (e.g. ``"host-2:pid-4711"``).
            candidates: Task ids (or content hashes), in the order the worker prefers them.
            n: How many to claim at most.
            lease_s: The lease; call :meth:`renew` before it runs out.

        Returns:
            The claimed ids, in candidate order (fewer than ``n``, or none, when the others are
            taken or done).
        """
        _check_lease(lease_s)
        wanted = list(dict.fromkeys(candidates))
        if n <= 0 or not wanted:
            return []
        taken: list[str] = []
        with self.transaction() as s:
            now = self._now(s)
            known: set[str] = set()
            free: set[str] = set()
            for start in range(0, len(wanted), _CHUNK):
                chunk = ClaimRow.task_id.in_(wanted[start:start + _CHUNK])
                known.update(s.scalars(select(ClaimRow.task_id).where(chunk)))
                # lock only the claimable rows, skipping those another worker is claiming now
                free.update(s.scalars(select(ClaimRow.task_id)
                                      .where(chunk, ClaimRow.status != ClaimStatus.DONE.value,
                                             ClaimRow.lease_until < now)
                                      .with_for_update(skip_locked=True)))
            values = {"worker_id": worker_id, "status": ClaimStatus.CLAIMED.value, "lease_until": now + lease_s,
                      "claimed_at": now_iso(), "outcome": None, "finished_at": None}
            for task_id in wanted:
                if len(taken) == n:
                    break
                if task_id in free:
                    s.execute(update(ClaimRow).where(ClaimRow.task_id == task_id)
                              .values(**values, attempts=ClaimRow.attempts + 1))
                    taken.append(task_id)
                elif task_id not in known and self._insert_claim(s, {"task_id": task_id, "attempts": 1, **values}):
                    taken.append(task_id)
        return taken

    def renew(self, worker_id: str, task_ids: Iterable[str], lease_s: float = DEFAULT_LEASE_S) -> list[str]:
        """Extend this worker's claims to ``lease_s`` seconds from now.

        A claim whose lease ran out is renewed too, unless another worker has claimed it since.

        Returns:
            The ids still held; a missing one was lost to another worker (stop working on it).
        """
        _check_lease(lease_s)
        ids = list(dict.fromkeys(task_ids))
        if not ids:
            return []
        with self.transaction() as s:
            now = self._now(s)
            held = s.scalars(update(ClaimRow)
                             .where(ClaimRow.task_id.in_(ids), ClaimRow.worker_id == worker_id,
                                    ClaimRow.status == ClaimStatus.CLAIMED.value)
                             .values(lease_until=now + lease_s).returning(ClaimRow.task_id)).all()
        return [t for t in ids if t in set(held)]

    def complete(self, worker_id: str, task_id: str, outcome: str = "done") -> Claim:
        """Mark a claimed task done, so that no worker is handed it again.

        Completing it twice is harmless. Record the task's results in the same
        ``store.transaction()`` to make them and the completion one step.

        Args:
            worker_id: The worker that holds the claim (its lease may have run out, as long as
                nobody claimed the task since).
            task_id: The task.
            outcome: A short note of how it ended (e.g. ``"learned"``, ``"unsolved"``).

        Raises:
            ConflictError: This worker does not hold the task: it never claimed it, released
                it, or lost it to another worker after its lease ran out.
        """
        with self.transaction() as s:
            now = self._now(s)
            row = s.scalars(select(ClaimRow).where(ClaimRow.task_id == task_id).with_for_update()
                            .execution_options(populate_existing=True)).one_or_none()
            if row is None or row.worker_id != worker_id or row.status == ClaimStatus.RELEASED.value:
                holder = f"it is held by {row.worker_id!r}" if row is not None and row.worker_id != worker_id else \
                    "it holds no claim on it"
                raise ConflictError(f"worker {worker_id!r} cannot complete {task_id!r}: {holder}; claim it with "
                                    "claim_tasks() first, and renew() the lease before it runs out")
            if row.status != ClaimStatus.DONE.value:
                row.status, row.outcome, row.finished_at = ClaimStatus.DONE.value, outcome, now_iso()
            s.flush()
            return _claim(row, now)

    def release(self, worker_id: str, task_ids: Iterable[str]) -> list[str]:
        """Give up this worker's claims on ``task_ids``; other workers can claim them at once.

        Returns:
            The ids that were released (those this worker held and had not completed).
        """
        ids = list(dict.fromkeys(task_ids))
        if not ids:
            return []
        with self.transaction() as s:
            gone = s.scalars(update(ClaimRow)
                             .where(ClaimRow.task_id.in_(ids), ClaimRow.worker_id == worker_id,
                                    ClaimRow.status == ClaimStatus.CLAIMED.value)
                             .values(status=ClaimStatus.RELEASED.value, lease_until=0.0)
                             .returning(ClaimRow.task_id)).all()
        return [t for t in ids if t in set(gone)]

    def claims(self, *, worker_id: str | None = None, status: ClaimStatus | str | None = None) -> list[Claim]:
        """Task claims by task id, optionally of one worker and/or one status."""
        query = select(ClaimRow).order_by(ClaimRow.task_id)
        if worker_id is not None:
            query = query.where(ClaimRow.worker_id == worker_id)
        if status is not None:
            query = query.where(ClaimRow.status == ClaimStatus(status).value)
        with self._reading() as s:
            now = self._now(s)
            return [_claim(r, now) for r in s.scalars(query)]

    @contextmanager
    def merge_lock(self, *, timeout_s: float | None = None) -> Iterator[None]:
        """Hold the library's merge lock for the block: one worker at a time finds, merges and
        re-verifies near-duplicates, so no two merge the same insights or lose one.

        PostgreSQL: a session advisory lock keyed by the library's id, on a connection of its
        own. SQLite: an exclusive ``flock`` on ``<database>.merge-lock`` beside the file. Both
        go when the process dies. The block holds no database transaction, so it may make model
        calls; nested use in one thread is allowed.

        Args:
            timeout_s: Give up after waiting this long (``None``: wait as long as it takes).

        Raises:
            LockTimeoutError: Another worker held the lock for longer than ``timeout_s``.
        """
        with self._named_lock("merge", timeout_s):
            yield

    @contextmanager
    def evolve_lock(self, *, timeout_s: float | None = 0) -> Iterator[None]:
        """Hold the library's evolve lock for the block: one evolution run at a time on this
        library, from whatever machine or home it is started (the same kind of lock as
        :meth:`merge_lock`, apart from it; ``<database>.evolve-lock`` for SQLite).

        Args:
            timeout_s: Give up after waiting this long (default: at once; ``None``: wait).

        Raises:
            LockTimeoutError: Another evolution run holds it.
        """
        with self._named_lock("evolve", timeout_s):
            yield

    @contextmanager
    def _named_lock(self, name: str, timeout_s: float | None) -> Iterator[None]:
        held = self._lock_held[name]
        if held.get():
            yield
            return
        token = held.set(True)
        try:
            if self._postgres():
                with self._postgres_lock(name, timeout_s):
                    yield
            elif self.url.database in (None, "", ":memory:"):
                lock = self._memory_locks[name]
                if not lock.acquire(timeout=-1 if timeout_s is None else timeout_s):
                    raise LockTimeoutError(_timeout_message(name, timeout_s))
                try:
                    yield
                finally:
                    lock.release()
            else:
                with self._file_lock(name, timeout_s):
                    yield
        finally:
            held.reset(token)

    @contextmanager
    def _postgres_lock(self, name: str, timeout_s: float | None) -> Iterator[None]:
        keys = {"a": _LOCKS[name], "b": _key32(self._library_id())}
        conn = self.engine.connect()
        try:
            if timeout_s is None:
                conn.execute(text("SELECT pg_advisory_lock(:a, :b)"), keys)
            else:
                _wait(lambda: bool(conn.execute(text("SELECT pg_try_advisory_lock(:a, :b)"), keys).scalar_one()),
                      name, timeout_s)
            conn.commit()  # a session lock outlives the transaction; none stays open while the block runs
        except BaseException:
            conn.invalidate()  # closing the connection drops any lock it took
            conn.close()
            raise
        try:
            yield
        finally:
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:a, :b)"), keys)
                conn.commit()
            except BaseException:
                conn.invalidate()
                raise
            finally:
                conn.close()

    @contextmanager
    def _file_lock(self, name: str, timeout_s: float | None) -> Iterator[None]:
        with open(f"{self.url.database}.{name}-lock", "a+b") as handle:
            if timeout_s is None:
                fcntl.flock(handle, fcntl.LOCK_EX)
            else:
                _wait(lambda: _try_flock(handle), name, timeout_s)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _try_flock(handle: Any) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait(attempt: Any, name: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not attempt():
        if time.monotonic() >= deadline:
            raise LockTimeoutError(_timeout_message(name, timeout_s))
        time.sleep(_POLL_S)


def _timeout_message(name: str, timeout_s: float | None) -> str:
    if name == "evolve":
        return ("another evolution run holds this library's evolve lock (one runs at a time on a library, "
                "from any machine); wait for it to finish or stop it first")
    return (f"the library's merge lock stayed taken for {timeout_s}s by another worker; wait longer "
            "(merge_lock(timeout_s=None) waits as long as it takes) or skip the merge this time")
