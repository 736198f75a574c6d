"""Engines and sessions for the library database (SQLite by path or URL, PostgreSQL by URL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, update
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from library.tables import Counter


def now_iso() -> str:
    """The current UTC time as ISO-8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def to_url(location: str | Path) -> URL:
    """A database URL from a URL string or a plain file path (which means SQLite).

    ``"sqlite://"`` (or ``":memory:"``) is an in-memory database shared by the store's sessions.
    """
    if isinstance(location, Path) or "://" not in location:
        if str(location) == ":memory:":
            return make_url("sqlite://")
        return make_url(f"sqlite:///{Path(location).expanduser().resolve()}")
    return make_url(location)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" listener issues BEGIN itself
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_file_connect(dbapi_connection: Any, record: Any) -> None:
    _sqlite_connect(dbapi_connection, record)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


_READ_ONLY = "library_read_only"


def _sqlite_begin(conn: Any) -> None:
    # A writing transaction takes the write lock up front, so a read inside it can never fail to
    # upgrade later (SQLITE_BUSY_SNAPSHOT). Reading transactions stay deferred: in WAL mode they
    # never wait for a writer.
    read_only = conn.get_execution_options().get(_READ_ONLY, False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def make_engine(url: URL) -> Engine:
    """An engine for ``url``, tuned for SQLite (immediate transactions, WAL, foreign keys)."""
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    args: dict[str, Any] = {"check_same_thread": False, "timeout": 30}
    if url.database in (None, "", ":memory:"):
        engine = create_engine(url, connect_args=args, poolclass=StaticPool)
        event.listen(engine, "connect", _sqlite_connect)
    else:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args=args)
        event.listen(engine, "connect", _sqlite_file_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


class Transactions:
    """One database transaction per outermost ``with``; inner ``with`` blocks join it.

    The open session is tracked per thread/task (a ``ContextVar``), so store methods called
    inside ``with store.transaction():`` write into that transaction.
    """

    def __init__(self, engine: Engine) -> None:
        self._write = sessionmaker(engine, expire_on_commit=False)
        self._read = sessionmaker(engine.execution_options(**{_READ_ONLY: True}), expire_on_commit=False)
        self._active: ContextVar[Session | None] = ContextVar(f"library_tx_{id(self)}", default=None)

    @contextmanager
    def __call__(self, *, write: bool = True) -> Iterator[Session]:
        """Yield the open session, or open one whose transaction commits when the block ends.

        Args:
            write: Whether the transaction may write; on SQLite a reading one does not wait for
                writers. Joining an open transaction keeps that transaction's mode.
        """
        active = self._active.get()
        if active is not None:
            yield active
            return
        with (self._write if write else self._read)() as session, session.begin():
            token = self._active.set(session)
            try:
                yield session
            finally:
                self._active.reset(token)


def bump(session: Session, name: str) -> int:
    """Increment counter ``name`` and return its new value.

    Counters only grow, inside the caller's transaction, so a committed id is never handed out
    again and a rolled-back one was never seen.
    """
    value = session.execute(
        update(Counter).where(Counter.name == name).values(value=Counter.value + 1).returning(Counter.value)
    ).scalar_one()
    return int(value)


def raise_to(session: Session, name: str, value: int) -> None:
    """Raise counter ``name`` to ``value`` if it is lower (used when importing fixed ids)."""
    session.execute(update(Counter).where(Counter.name == name, Counter.value < value).values(value=value))
