"""ORM mappings of the library database. Internal: the store turns rows into ``library.models``.

The tables are created by ``library.migrations``, not by ``metadata.create_all``; a test checks
that these mappings and the migrated schema agree column for column.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

_ID = String(64)
_TIME = String(32)  # ISO-8601 UTC text: identical on every backend, so exports are byte-stable


class Base(DeclarativeBase):
    """Declarative base of the library tables."""


class Meta(Base):
    """Key-value facts about the library, e.g. its random ``library_id``."""

    __tablename__ = "library_meta"
    key: Mapped[str] = mapped_column(_ID, primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Counter(Base):
    """Monotonic counters: insight and run ids, and the revision behind ``version_stamp``."""

    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(_ID, primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


class LabelRow(Base):
    """A taxonomy label, unique by its canonical ``(stage, level1, level2)``."""

    __tablename__ = "taxonomy_labels"
    __table_args__ = (UniqueConstraint("stage", "level1", "level2", name="uq_taxonomy_labels_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage: Mapped[str] = mapped_column(_ID)
    level1: Mapped[str] = mapped_column(String(200))
    level2: Mapped[str] = mapped_column(String(200))
    display: Mapped[str] = mapped_column(String(200))
    definition: Mapped[str] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[str] = mapped_column(_TIME)
    retired_at: Mapped[str | None] = mapped_column(_TIME)  # set by retire_label; None while in use


class InsightRow(Base):
    """An insight: stable id, status, and the version it currently points at."""

    __tablename__ = "insights"
    id: Mapped[str] = mapped_column(_ID, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    current_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[str] = mapped_column(_TIME)
    updated_at: Mapped[str] = mapped_column(_TIME)


class VersionRow(Base):
    """One immutable version of an insight: label, content and provenance."""

    __tablename__ = "insight_versions"
    insight_id: Mapped[str] = mapped_column(_ID, ForeignKey("insights.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    label_id: Mapped[int] = mapped_column(Integer, ForeignKey("taxonomy_labels.id"))
    condition: Mapped[str] = mapped_column(Text)
    explanation: Mapped[str] = mapped_column(Text)
    example: Mapped[str] = mapped_column(Text)
    source_tasks: Mapped[list[str]] = mapped_column(JSON)
    model: Mapped[str | None] = mapped_column(String(200))
    prompt_version: Mapped[str | None] = mapped_column(String(200))
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    run_id: Mapped[str | None] = mapped_column(_ID)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(_TIME)


class TaskRow(Base):
    """A training problem; the answer is kept for learning only."""

    __tablename__ = "training_tasks"
    __table_args__ = (UniqueConstraint("dataset", "item_id", name="uq_training_tasks_item"),)
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    dataset: Mapped[str] = mapped_column(String(100))
    item_id: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)
    answer: Mapped[Any] = mapped_column(JSON, nullable=True)
    created_at: Mapped[str] = mapped_column(_TIME)


class RunRow(Base):
    """A learning run: settings, counters and tokens."""

    __tablename__ = "learning_runs"
    id: Mapped[str] = mapped_column(_ID, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[str] = mapped_column(_TIME)
    finished_at: Mapped[str | None] = mapped_column(_TIME)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    counters: Mapped[dict[str, Any]] = mapped_column(JSON)
    tokens: Mapped[int] = mapped_column(Integer)


class AttemptRow(Base):
    """One attempt at a training task."""

    __tablename__ = "attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[str] = mapped_column(String(200), ForeignKey("training_tasks.id"), index=True)
    run_id: Mapped[str | None] = mapped_column(_ID, ForeignKey("learning_runs.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    program: Mapped[str | None] = mapped_column(Text)
    objective: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    tokens: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[str] = mapped_column(_TIME)


class EvidenceRow(Base):
    """Whether an insight was retrieved and used for a task or run, and the outcome."""

    __tablename__ = "retrieval_evidence"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    insight_id: Mapped[str] = mapped_column(_ID, index=True)  # no FK: evidence outlives a deleted insight
    version: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(_ID)
    task_id: Mapped[str | None] = mapped_column(String(200))
    run_id: Mapped[str | None] = mapped_column(_ID)
    retrieved: Mapped[bool] = mapped_column(Boolean)
    used: Mapped[bool] = mapped_column(Boolean)
    success: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[str] = mapped_column(_TIME)


class LibraryVersionRow(Base):
    """One library version: every committed change to insights or labels gets one (per transaction)."""

    __tablename__ = "library_versions"
    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    created_at: Mapped[str] = mapped_column(_TIME)
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(200))


class InsightStateRow(Base):
    """An insight's version pointer and status as a library version left them (only the changed ones)."""

    __tablename__ = "insight_states"
    library_version: Mapped[int] = mapped_column(Integer, ForeignKey("library_versions.number"), primary_key=True)
    insight_id: Mapped[str] = mapped_column(_ID, primary_key=True)  # no FK: the record outlives a deleted insight
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # an insight status, or "deleted"


class LabelStateRow(Base):
    """A label's display name, definition and retirement as a library version left them."""

    __tablename__ = "label_states"
    library_version: Mapped[int] = mapped_column(Integer, ForeignKey("library_versions.number"), primary_key=True)
    label_id: Mapped[int] = mapped_column(Integer, ForeignKey("taxonomy_labels.id"), primary_key=True)
    display: Mapped[str] = mapped_column(String(200))
    definition: Mapped[str] = mapped_column(Text)
    retired: Mapped[bool] = mapped_column(Boolean)


class ClaimRow(Base):
    """A worker's leased claim on a training task (or any task key), or the task's completion."""

    __tablename__ = "task_claims"
    task_id: Mapped[str] = mapped_column(String(200), primary_key=True)  # no FK: a task id or a content hash
    worker_id: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    lease_until: Mapped[float] = mapped_column(Float)  # epoch seconds on the database's clock
    attempts: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str | None] = mapped_column(Text)
    claimed_at: Mapped[str] = mapped_column(_TIME)
    finished_at: Mapped[str | None] = mapped_column(_TIME)
