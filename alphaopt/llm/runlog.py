"""``runs.db``: the log of every LLM call and every saved run, apart from the library.

Schema changes are an ordered list of named migrations, applied once each and recorded in
``_migrations`` (a test pins the resulting columns). Each operation opens its own short
connection, so the log is safe to use from several threads and processes.

With ``ALPHAOPT_RUNS_URL`` (a PostgreSQL URL) the same tables live in that database instead
(``alphaopt.llm.runlog_postgres``), so the runs and calls of every machine of a cluster are
listed by ``alphaopt runs`` and ``alphaopt logs`` anywhere.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alphaopt.config import Settings
from alphaopt.llm import runlog_postgres as pg

_MIGRATIONS: list[tuple[str, str]] = [
    (
        "m001_llm_calls",
        """
        CREATE TABLE llm_calls (
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
            latency_ms REAL,
            error TEXT,
            cache_key TEXT NOT NULL,
            cached INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL
        );
        CREATE INDEX llm_calls_cache_key ON llm_calls (cache_key);
        CREATE INDEX llm_calls_run_id ON llm_calls (run_id);
        """,
    ),
    (
        "m002_runs",
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            problem TEXT NOT NULL,
            status TEXT NOT NULL,
            objective REAL,
            solution TEXT NOT NULL
        );
        """,
    ),
]


def now_iso() -> str:
    """The current UTC time as ISO-8601."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class CallRecord:
    """One row of ``llm_calls``, as written by the LLM client."""

    id: str
    prompt_name: str
    prompt_sha: str
    model: str
    params: dict[str, Any]
    messages: list[dict[str, Any]]
    cache_key: str
    response: str | None = None
    parse_ok: bool | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None
    error: str | None = None
    cached: bool = False
    run_id: str | None = None
    task_id: str | None = None
    node: str | None = None


#: A row of the log: a dict by column name (the same from SQLite and PostgreSQL).
Row = dict[str, Any]


def _dict_row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> Row:
    return {column[0]: value for column, value in zip(cursor.description, values, strict=True)}


def open_run_log(settings: Settings) -> RunLog:
    """The run log the settings name: ``runs_url`` (PostgreSQL) when set, else ``runs.db`` in the home."""
    return RunLog(settings.runs_url or settings.runs_db)


class RunLog:
    """Access to ``runs.db`` (a path) or to the same tables in PostgreSQL (a URL); migrates on first use."""

    def __init__(self, location: Path | str) -> None:
        self.url = str(location) if pg.is_url(location) else None
        self.path = None if self.url else Path(location)
        if self.url:
            pg.engine_for(self.url)  # connects and migrates once per process
            return
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            migrate(db)

    @property
    def where(self) -> str:
        """Where the log is, for messages: the file, or the database URL without its password."""
        return pg.redacted(self.url) if self.url else str(self.path)

    @contextmanager
    def _connect(self) -> Iterator[Any]:
        if self.url:
            with pg.connect(self.url) as conn:
                yield conn
            return
        db = sqlite3.connect(self.path, timeout=30)  # type: ignore[arg-type]  # a path when there is no URL
        db.row_factory = _dict_row
        try:
            with db:
                yield db
        finally:
            db.close()

    def log_call(self, record: CallRecord) -> None:
        """Append one LLM call."""
        row = {
            **record.__dict__,
            "params": json.dumps(record.params, sort_keys=True),
            "messages": json.dumps(record.messages),
            "parse_ok": None if record.parse_ok is None else int(record.parse_ok),
            "cached": int(record.cached),
            "created_at": now_iso(),
        }
        columns = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)
        with self._connect() as db:
            db.execute(f"INSERT INTO llm_calls ({columns}) VALUES ({marks})", row)

    def cached_response(self, cache_key: str) -> Row | None:
        """The newest answered, non-cached call with this content hash, if any.

        Faults are never replayed: a call with an error, one without a response or with an empty
        text (logged so by earlier versions), or one whose reply missed its output schema.
        """
        with self._connect() as db:
            if self.url:
                return db.execute(pg.CACHED_RESPONSE, (cache_key,)).fetchone()
            return db.execute(
                "SELECT * FROM llm_calls WHERE cache_key = ? AND error IS NULL AND cached = 0 "
                "AND CASE WHEN json_valid(response) THEN trim(coalesce(json_extract(response, '$.text'), ''), "
                "char(32, 9, 10, 13)) ELSE '' END <> '' "
                "AND (parse_ok IS NULL OR parse_ok = 1) "
                "ORDER BY created_at DESC LIMIT 1",
                (cache_key,),
            ).fetchone()

    def calls(self, *, limit: int = 20, run_id: str | None = None) -> list[Row]:
        """The most recent calls, newest first."""
        query, args = "SELECT * FROM llm_calls", []
        if run_id:
            query, args = query + " WHERE run_id = ?", [run_id]
        with self._connect() as db:
            newest = pg.NEWEST_CALLS if self.url else " ORDER BY created_at DESC, rowid DESC LIMIT ?"
            return db.execute(query + newest, (*args, limit)).fetchall()

    def call(self, call_id: str) -> Row | None:
        """One call by id (a unique prefix is enough)."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM llm_calls WHERE id LIKE ? LIMIT 2", (call_id + "%",)).fetchall()
        return rows[0] if len(rows) == 1 else None

    def save_run(self, run_id: str, problem: str, status: str, objective: float | None, solution: str) -> None:
        """Store (or replace) a finished run's solution JSON."""
        with self._connect() as db:
            save = pg.SAVE_RUN if self.url else ("INSERT OR REPLACE INTO runs (id, created_at, problem, status, "
                                                 "objective, solution) VALUES (?, ?, ?, ?, ?, ?)")
            db.execute(save, (run_id, now_iso(), problem, status, objective, solution))

    def run(self, run_id: str) -> Row | None:
        """One saved run by id (a unique prefix is enough)."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM runs WHERE id LIKE ? LIMIT 2", (run_id + "%",)).fetchall()
        return rows[0] if len(rows) == 1 else None

    def runs(self, *, limit: int = 20) -> list[Row]:
        """The most recent saved runs, newest first."""
        with self._connect() as db:
            return db.execute("SELECT * FROM runs ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()


def migrate(db: sqlite3.Connection, migrations: list[tuple[str, str]] | None = None) -> list[str]:
    """Apply the migrations not yet recorded, in one write transaction; return the names applied.

    The transaction is taken before the list of applied migrations is read, so connections that
    open a fresh ``runs.db`` at once (the threads of a concurrent learning run, or two processes)
    apply each migration once: the others wait, then find it recorded.
    """
    if db.in_transaction:
        db.commit()
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        names = db.cursor()
        names.row_factory = None  # plain tuples, whatever the connection's rows are
        done = {row[0] for row in names.execute("SELECT name FROM _migrations")}
        applied = []
        for name, sql in migrations or _MIGRATIONS:
            if name in done:
                continue
            for statement in _statements(sql):
                db.execute(statement)
            db.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", (name, now_iso()))
            applied.append(name)
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return applied


def _statements(script: str) -> list[str]:
    """The SQL statements of a script (``executescript`` would commit the open transaction)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements

