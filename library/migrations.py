"""Schema migrations: an ordered list of named steps, each applied once and recorded in ``_migrations``.

Each step gets Alembic's ``Operations`` (used programmatically, no ``alembic.ini``), so later
steps can add or alter columns portably (``op.batch_alter_table`` for SQLite). Steps are frozen:
never edit a released one, append a new one. ``tests/test_library_store.py`` pins the result.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy.engine import Connection, Engine

_ID = sa.String(64)
_TIME = sa.String(32)
_LOCK_KEY = 0x616F_6C69  # PostgreSQL advisory lock id ("aoli") serialising concurrent migrations

_migrations_table = sa.Table(
    "_migrations",
    sa.MetaData(),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("applied_at", _TIME, nullable=False),
)


def _m001_initial(op: Operations) -> None:
    op.create_table(
        "library_meta",
        sa.Column("key", _ID, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "counters",
        sa.Column("name", _ID, primary_key=True),
        sa.Column("value", sa.Integer, nullable=False),
    )
    op.create_table(
        "taxonomy_labels",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("stage", _ID, nullable=False),
        sa.Column("level1", sa.String(200), nullable=False),
        sa.Column("level2", sa.String(200), nullable=False),
        sa.Column("display", sa.String(200), nullable=False),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.UniqueConstraint("stage", "level1", "level2", name="uq_taxonomy_labels_key"),
    )
    op.create_table(
        "insights",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("current_version", sa.Integer, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
    )
    op.create_index("ix_insights_status", "insights", ["status"])
    op.create_table(
        "insight_versions",
        sa.Column("insight_id", _ID, sa.ForeignKey("insights.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("label_id", sa.Integer, sa.ForeignKey("taxonomy_labels.id"), nullable=False),
        sa.Column("condition", sa.Text, nullable=False),
        sa.Column("explanation", sa.Text, nullable=False),
        sa.Column("example", sa.Text, nullable=False),
        sa.Column("source_tasks", sa.JSON, nullable=False),
        sa.Column("model", sa.String(200)),
        sa.Column("prompt_version", sa.String(200)),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("run_id", _ID),
        sa.Column("reason", sa.Text),
        sa.Column("created_at", _TIME, nullable=False),
    )
    op.create_table(
        "training_tasks",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("dataset", sa.String(100), nullable=False),
        sa.Column("item_id", sa.String(100), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("answer", sa.JSON),
        sa.Column("created_at", _TIME, nullable=False),
        sa.UniqueConstraint("dataset", "item_id", name="uq_training_tasks_item"),
    )
    op.create_table(
        "learning_runs",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", _TIME, nullable=False),
        sa.Column("finished_at", _TIME),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("counters", sa.JSON, nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False),
    )
    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("task_id", sa.String(200), sa.ForeignKey("training_tasks.id"), nullable=False),
        sa.Column("run_id", _ID, sa.ForeignKey("learning_runs.id")),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("program", sa.Text),
        sa.Column("objective", sa.Float),
        sa.Column("error", sa.Text),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
    )
    op.create_index("ix_attempts_task_id", "attempts", ["task_id"])
    op.create_index("ix_attempts_run_id", "attempts", ["run_id"])
    op.create_table(
        "retrieval_evidence",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("insight_id", _ID, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("stage", _ID, nullable=False),
        sa.Column("task_id", sa.String(200)),
        sa.Column("run_id", _ID),
        sa.Column("retrieved", sa.Boolean, nullable=False),
        sa.Column("used", sa.Boolean, nullable=False),
        sa.Column("success", sa.Boolean),
        sa.Column("created_at", _TIME, nullable=False),
    )
    op.create_index("ix_retrieval_evidence_insight_id", "retrieval_evidence", ["insight_id"])
    meta = sa.table("library_meta", sa.column("key", sa.String), sa.column("value", sa.String))
    op.bulk_insert(meta, [{"key": "library_id", "value": uuid.uuid4().hex}])
    counters = sa.table("counters", sa.column("name", sa.String), sa.column("value", sa.Integer))
    op.bulk_insert(counters, [{"name": n, "value": 0} for n in ("insight", "run", "revision")])


def _m002_history_and_claims(op: Operations) -> None:
    """Library versions (with the insight and label states each left), label retirement, task claims.

    A database that already holds insights or labels gets library version 1, "baseline", with
    the state of every one, so a rollback can return to the library as it was when migrated.
    """
    op.add_column("taxonomy_labels", sa.Column("retired_at", _TIME, nullable=True))
    op.create_table(
        "library_versions",
        sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.String(200)),
    )
    op.create_table(
        "insight_states",
        sa.Column("library_version", sa.Integer, sa.ForeignKey("library_versions.number"), primary_key=True),
        sa.Column("insight_id", _ID, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
    )
    op.create_table(
        "label_states",
        sa.Column("library_version", sa.Integer, sa.ForeignKey("library_versions.number"), primary_key=True),
        sa.Column("label_id", sa.Integer, sa.ForeignKey("taxonomy_labels.id"), primary_key=True),
        sa.Column("display", sa.String(200), nullable=False),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("retired", sa.Boolean, nullable=False),
    )
    op.create_table(
        "task_claims",
        sa.Column("task_id", sa.String(200), primary_key=True),
        sa.Column("worker_id", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("lease_until", sa.Float, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("outcome", sa.Text),
        sa.Column("claimed_at", _TIME, nullable=False),
        sa.Column("finished_at", _TIME),
    )
    conn = op.get_bind()
    insights = conn.execute(sa.text("SELECT id, current_version, status FROM insights")).all()
    labels = conn.execute(sa.text("SELECT id, display, definition FROM taxonomy_labels")).all()
    baseline = 1 if insights or labels else 0
    counters = sa.table("counters", sa.column("name", sa.String), sa.column("value", sa.Integer))
    op.bulk_insert(counters, [{"name": "library_version", "value": baseline}])
    if not baseline:
        return
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    versions = sa.table("library_versions", sa.column("number", sa.Integer), sa.column("created_at", sa.String),
                        sa.column("reason", sa.Text), sa.column("actor", sa.String))
    op.bulk_insert(versions, [{"number": 1, "created_at": stamp, "reason": "baseline: the library when versions began",
                               "actor": "migration m002"}])
    states = sa.table("insight_states", sa.column("library_version", sa.Integer), sa.column("insight_id", sa.String),
                      sa.column("version", sa.Integer), sa.column("status", sa.String))
    if insights:
        op.bulk_insert(states, [{"library_version": 1, "insight_id": i, "version": v, "status": st}
                                for i, v, st in insights])
    label_states = sa.table("label_states", sa.column("library_version", sa.Integer), sa.column("label_id", sa.Integer),
                            sa.column("display", sa.String), sa.column("definition", sa.Text),
                            sa.column("retired", sa.Boolean))
    if labels:
        op.bulk_insert(label_states, [{"library_version": 1, "label_id": i, "display": d, "definition": text,
                                       "retired": False} for i, d, text in labels])


MIGRATIONS: list[tuple[str, Callable[[Operations], None]]] = [
    ("m001_initial", _m001_initial),
    ("m002_history_and_claims", _m002_history_and_claims),
]


def _apply_pending(conn: Connection) -> list[str]:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    _migrations_table.create(conn, checkfirst=True)
    done = set(conn.execute(sa.select(_migrations_table.c.name)).scalars())
    op = Operations(MigrationContext.configure(conn))
    applied = []
    for name, step in MIGRATIONS:
        if name in done:
            continue
        step(op)
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        conn.execute(_migrations_table.insert().values(name=name, applied_at=stamp))
        applied.append(name)
    return applied


def migrate(engine: Engine) -> list[str]:
    """Apply the migrations this database lacks, all in one transaction.

    Args:
        engine: The library database.

    Returns:
        The names of the migrations applied now (empty when the schema was current).
    """
    with engine.begin() as conn:
        return _apply_pending(conn)
