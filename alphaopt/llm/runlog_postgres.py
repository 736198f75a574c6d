"""The run log in PostgreSQL: the same two tables as ``runs.db``, shared by every machine.

``RunLog`` (``alphaopt.llm.runlog``) keeps its SQL; this module holds what differs on
PostgreSQL: the migrations' column types, the placeholders, and the few statements SQLite
writes in its own dialect. Engines (connection pools) are made once per URL and process, and the
schema is migrated once per URL and process, so an agent built per solve costs no new connection.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, make_url, text
from sqlalchemy.exc import ArgumentError, OperationalError

from alphaopt.errors import ConfigError

_MIGRATIONS: list[tuple[str, list[str]]] = [
    ("m001_llm_calls", [
        """CREATE TABLE llm_calls (
            id TEXT PRIMARY KEY,
            run_id TEXT,
            task_id TEXT,
            node TEXT,
            prompt_name TEXT NOT NULL,
            prompt_sha TEXT NOT NULL,
            model TEXT NOT NULL,
            params TEXT NOT NULL,
            messages TEXT NOT NULL,
            response TEXT,
            parse_ok INTEGER,
            input_tokens INTEGER,
            output_tokens INTEGER,
            latency_ms DOUBLE PRECISION,
            error TEXT,
            cache_key TEXT NOT NULL,
            cached INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX llm_calls_cache_key ON llm_calls (cache_key)",
        "CREATE INDEX llm_calls_run_id ON llm_calls (run_id)",
    ]),
    ("m002_runs", [
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            problem TEXT NOT NULL,
            status TEXT NOT NULL,
            objective DOUBLE PRECISION,
            solution TEXT NOT NULL
        )""",
    ]),
]

#: Serializes migrations of one database across processes ("aorl": alphaopt run log).
_MIGRATION_LOCK = 0x616F_726C

#: ``cached_response`` on PostgreSQL: the same rule as SQLite's query (never replay a fault: an
#: error, no response, an empty text, a reply that missed its schema). The log here is only ever
#: written by this version, so every response is JSON.
CACHED_RESPONSE = (
    "SELECT * FROM llm_calls WHERE cache_key = ? AND error IS NULL AND cached = 0 "
    "AND btrim(coalesce((response::json) ->> 'text', ''), E' \\t\\n\\r') <> '' "
    "AND (parse_ok IS NULL OR parse_ok = 1) "
    "ORDER BY created_at DESC LIMIT 1"
)
#: ``save_run``: replace a run saved again (SQLite says ``INSERT OR REPLACE``).
SAVE_RUN = (
    "INSERT INTO runs (id, created_at, problem, status, objective, solution) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, problem = excluded.problem, "
    "status = excluded.status, objective = excluded.objective, solution = excluded.solution"
)
#: The newest first; ULIDs break ties within a millisecond (SQLite uses its rowid).
NEWEST_CALLS = " ORDER BY created_at DESC, id DESC LIMIT ?"

_ENGINES: dict[str, Engine] = {}
_MIGRATED: set[str] = set()
_LOCK = threading.Lock()
_NAMED = re.compile(r"(?<![:\w]):(\w+)")


def is_url(location: object) -> bool:
    """True when ``location`` names a PostgreSQL database rather than a SQLite file."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgresql+", "postgres://"))


def redacted(url: str) -> str:
    """The URL with its password hidden, for messages and listings."""
    return make_url(url).render_as_string(hide_password=True)


def engine_for(url: str) -> Engine:
    """The process's connection pool for ``url``, with the schema migrated (once per process).

    Raises:
        ConfigError: the URL cannot be parsed, or the server cannot be reached.
    """
    with _LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            try:
                parsed = make_url(url.replace("postgres://", "postgresql://", 1))
            except ArgumentError as exc:
                raise ConfigError(f"ALPHAOPT_RUNS_URL is not a database URL ({exc}): give "
                                  "postgresql+psycopg://user:password@host:5432/database") from exc
            if parsed.drivername in ("postgresql", "postgres"):
                parsed = parsed.set(drivername="postgresql+psycopg")
            engine = _ENGINES[url] = create_engine(parsed, pool_pre_ping=True, pool_size=4, max_overflow=8)
        if url not in _MIGRATED:
            try:
                with engine.begin() as conn:
                    migrate(conn)
            except OperationalError as exc:
                raise ConfigError(f"Cannot reach the run log at {redacted(url)}: {exc}. Check ALPHAOPT_RUNS_URL "
                                  "(unset it to keep runs in runs.db in the home).") from exc
            _MIGRATED.add(url)
    return engine


def migrate(conn: Connection) -> list[str]:
    """Apply the migrations not yet recorded, in the caller's transaction; return the names applied.

    A transaction-scoped advisory lock is taken first, so processes that open a fresh database at
    once (the workers of a cluster) apply each migration once: the others wait, then find it recorded.
    """
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    conn.execute(text("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"))
    done = set(conn.execute(text("SELECT name FROM _migrations")).scalars())
    applied = []
    for name, statements in _MIGRATIONS:
        if name in done:
            continue
        for statement in statements:
            conn.execute(text(statement))
        conn.execute(text("INSERT INTO _migrations (name, applied_at) VALUES (:name, :at)"),
                     {"name": name, "at": datetime.now(UTC).isoformat(timespec="milliseconds")})
        applied.append(name)
    return applied


class PostgresConnection:
    """What ``RunLog`` needs of a connection: ``execute(sql, params)`` with SQLite's ``?`` and
    ``:name`` placeholders, returning rows as dicts by column name."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Mapping[str, Any] | tuple[Any, ...] | list[Any] = ()) -> Any:
        """Run one statement; its rows (if any) come back as dicts, by ``fetchone``/``fetchall``."""
        if isinstance(params, Mapping):
            sql, args = _NAMED.sub(r"%(\1)s", sql), dict(params)
        else:
            sql, args = sql.replace("?", "%s"), tuple(params)  # type: ignore[assignment]
        result = self._conn.exec_driver_sql(sql, args)
        return _Rows(result.mappings().all() if result.returns_rows else [])


class _Rows:
    """Fetched rows as dicts, read like a DB-API cursor (``fetchone``, ``fetchall``)."""

    def __init__(self, rows: Sequence[Mapping[Any, Any]]) -> None:
        self._rows = [dict(row) for row in rows]

    def fetchone(self) -> dict[str, Any] | None:
        """The first row, or None."""
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[dict[str, Any]]:
        """All rows."""
        return self._rows


@contextmanager
def connect(url: str) -> Iterator[PostgresConnection]:
    """One transaction on the pooled connection for ``url``: committed at the end, rolled back on error."""
    with engine_for(url).begin() as conn:
        yield PostgresConnection(conn)
