"""The core of ``LibraryStore``: its database, transactions, and insights with their versions.

Insights get stable ids (``"I0001"``, ...) from a counter, never from ``max(id)``, so a retired
or deleted insight's id is never handed out again. Versions are immutable: a revision writes a
new version row and moves the insight's pointer. Every method joins an open
``store.transaction()``, so one learning step commits (or rolls back) as a whole. Every change
to insights or labels is recorded as a library version (``library.changes``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Unpack

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from library import changes
from library.db import Transactions, bump, make_engine, now_iso, to_url
from library.errors import InvalidInsightError, NotFoundError
from library.migrations import migrate
from library.models import (
    Insight,
    InsightChanges,
    InsightDraft,
    Label,
    Provenance,
    Status,
)
from library.tables import Counter, InsightRow, LabelRow, Meta, VersionRow
from library.taxonomy import LabelKey, Stage, parse_stage

CONTENT = ("condition", "explanation", "example")
PROVENANCE = ("source_tasks", "model", "prompt_version", "evidence", "run_id")
LABEL = ("stage", "level1", "level2")


def label_model(row: LabelRow) -> Label:
    """The public form of a label row."""
    return Label(stage=parse_stage(row.stage), level1=row.level1, level2=row.level2, display=row.display,
                 definition=row.definition, origin=row.origin, retired=row.retired_at is not None)


def insight_model(ins: InsightRow, ver: VersionRow, label: LabelRow) -> Insight:
    """The public form of one insight version."""
    return Insight(
        id=ins.id, version=ver.version, is_current=ver.version == ins.current_version, status=Status(ins.status),
        stage=parse_stage(label.stage), level1=label.level1, level2=label.level2,
        condition=ver.condition, explanation=ver.explanation, example=ver.example,
        provenance=Provenance(source_tasks=tuple(ver.source_tasks), model=ver.model,
                              prompt_version=ver.prompt_version, evidence=ver.evidence, run_id=ver.run_id),
        reason=ver.reason, created_at=ins.created_at, version_created_at=ver.created_at, updated_at=ins.updated_at,
    )


def label_query(key: LabelKey) -> Any:
    """The select of the label row at ``key``."""
    return select(LabelRow).where(LabelRow.stage == key.stage.value, LabelRow.level1 == key.level1,
                                  LabelRow.level2 == key.level2)


def _statuses(status: Status | str | Iterable[Status | str] | None) -> list[str] | None:
    if status is None:
        return None
    values = [status] if isinstance(status, str) else list(status)
    return [Status(v).value for v in values]


class StoreCore:
    """The database, its transactions, and insights (``LibraryStore`` adds the rest).

    Args:
        location: A SQLAlchemy URL, a plain file path (SQLite), or ``":memory:"``.
        actor: Who writes through this store (e.g. ``"learn R0003 on host-2"``); recorded on
            each library version it makes unless a transaction names another.
    """

    def __init__(self, location: str | Path, *, actor: str | None = None) -> None:
        self.url = to_url(location)
        self.engine = make_engine(self.url)
        self.actor = actor
        migrate(self.engine)
        self._transactions = Transactions(self.engine)

    @contextmanager
    def transaction(self, *, reason: str | None = None, actor: str | None = None) -> Iterator[Session]:
        """Open a transaction, or join the one already open in this thread.

        Everything the store writes inside the ``with`` block commits together at its end, or
        not at all if the block raises (a killed process commits nothing of it). The changes to
        insights and labels in it make one library version. The yielded ``Session`` may also be
        used directly.

        Args:
            reason: The library version's reason (default: the changes' own notes, joined).
            actor: The library version's actor (default: the store's ``actor``).
        """
        with self._transactions() as session:
            if reason and changes.REASON_KEY not in session.info:
                session.info[changes.REASON_KEY] = reason
            session.info.setdefault(changes.ACTOR_KEY, actor or self.actor)
            yield session

    def _reading(self) -> AbstractContextManager[Session]:
        return self._transactions(write=False)

    def _library_id(self) -> str:
        with self._reading() as s:
            return str(s.scalars(select(Meta.value).where(Meta.key == "library_id")).one())

    # -- labels as insights use them

    def _label_row(self, s: Session, key: LabelKey, display: str, definition: str, origin: str) -> LabelRow:
        """The label row at ``key``: created if missing, brought back if retired (both recorded)."""
        row = s.scalar(label_query(key))
        if row is not None:
            if row.retired_at is not None:
                row.retired_at = None
                changes.record(s, f"label {key.path} back in use", labels=[row])
            return row
        try:
            with s.begin_nested():  # another writer may add the same label concurrently
                row = LabelRow(stage=key.stage.value, level1=key.level1, level2=key.level2, display=display,
                               definition=definition, origin=origin, created_at=now_iso(), retired_at=None)
                s.add(row)
        except IntegrityError:
            return s.scalars(label_query(key)).one()
        changes.record(s, f"label {key.path} added", labels=[row])
        return row

    # -- insights

    def add_insight(self, draft: InsightDraft, *, status: Status | str = Status.CANDIDATE,
                    provenance: Provenance | dict[str, Any] | None = None) -> Insight:
        """Store a new insight as version 1 under a newly allocated id.

        Args:
            draft: Label, condition, explanation and example.
            status: Initial status (usually ``candidate``).
            provenance: Source tasks, model, prompt version, evidence and run id.
        """
        prov = Provenance.model_validate(provenance or {})
        with self.transaction() as s:
            changes.serialize(s)
            label = self._label_row(s, draft.label, draft.level2, "", "learned")
            stamp = now_iso()
            ins = InsightRow(id=f"I{bump(s, 'insight'):04d}", status=Status(status).value, current_version=1,
                             created_at=stamp, updated_at=stamp)
            ver = VersionRow(insight_id=ins.id, version=1, label_id=label.id, condition=draft.condition,
                             explanation=draft.explanation, example=draft.example,
                             source_tasks=list(prov.source_tasks), model=prov.model,
                             prompt_version=prov.prompt_version, evidence=prov.evidence, run_id=prov.run_id,
                             reason=None, created_at=stamp)
            s.add_all([ins, ver])
            changes.record(s, f"add {ins.id}", insights=[ins])
            return insight_model(ins, ver, label)

    def _current(self, s: Session, insight_id: str, *, lock: bool = False) -> tuple[InsightRow, VersionRow, LabelRow]:
        """The insight row (locked for update with ``lock``), its current version and label."""
        if lock:  # PostgreSQL: concurrent writers of this insight queue here and then see its latest state
            query = select(InsightRow).where(InsightRow.id == insight_id).with_for_update()
            ins = s.scalars(query.execution_options(populate_existing=True)).one_or_none()
        else:
            ins = s.get(InsightRow, insight_id)
        if ins is None:
            raise NotFoundError(f"no insight {insight_id!r}; list() shows the ids this library holds")
        ver = s.get(VersionRow, (insight_id, ins.current_version))
        assert ver is not None, f"insight {insight_id!r} points at a missing version"
        label = s.get(LabelRow, ver.label_id)
        assert label is not None
        return ins, ver, label

    def get(self, insight_id: str) -> Insight:
        """The current version of ``insight_id``."""
        with self._reading() as s:
            return insight_model(*self._current(s, insight_id))

    def versions(self, insight_id: str) -> list[Insight]:
        """Every version of ``insight_id``, oldest first."""
        with self._reading() as s:
            ins = self._current(s, insight_id)[0]
            rows = s.execute(select(VersionRow, LabelRow).join(LabelRow, VersionRow.label_id == LabelRow.id)
                             .where(VersionRow.insight_id == insight_id).order_by(VersionRow.version)).all()
            return [insight_model(ins, ver, label) for ver, label in rows]

    def revise(self, insight_id: str, **changes_: Unpack[InsightChanges]) -> Insight:
        """Write a new immutable version of an insight with some fields changed.

        Args:
            insight_id: The insight to revise.
            **changes_: New values for label (``stage``/``level1``/``level2``), content
                (``condition``/``explanation``/``example``) or provenance (``source_tasks``,
                ``model``, ``prompt_version``, ``evidence``, ``run_id`` — each replaces the old
                value), and ``reason``, why this version exists.

        Returns:
            The new current version, or the unchanged current one when nothing differs.
        """
        unknown = set(changes_) - {*CONTENT, *PROVENANCE, *LABEL, "reason"}
        if unknown:
            raise InvalidInsightError(f"revise() cannot change {sorted(unknown)}; see InsightChanges for the fields")
        with self.transaction() as s:
            changes.serialize(s)
            ins, ver, label = self._current(s, insight_id, lock=True)
            old = insight_model(ins, ver, label)
            draft = InsightDraft.model_validate({k: changes_.get(k, getattr(old, k)) for k in (*LABEL, *CONTENT)})
            prov = Provenance.model_validate(
                {**old.provenance.model_dump(), **{k: v for k, v in changes_.items() if k in PROVENANCE}}
            )
            same_content = all(getattr(draft, k) == getattr(old, k) for k in CONTENT)
            if same_content and draft.label == old.label and prov == old.provenance:
                return old
            new_label = self._label_row(s, draft.label, draft.level2, "", "learned")
            new = self._write_version(s, ins, new_label.id, draft, prov, changes_.get("reason"))
            changes.record(s, f"revise {insight_id}", insights=[ins])
            return insight_model(ins, new, new_label)

    def _write_version(self, s: Session, ins: InsightRow, label_id: int, content: Any, prov: Provenance,
                       reason: str | None) -> VersionRow:
        """Add the insight's next version (after its highest) and point the insight at it."""
        top = s.scalar(select(func.max(VersionRow.version)).where(VersionRow.insight_id == ins.id)) or 0
        stamp = now_iso()
        new = VersionRow(insight_id=ins.id, version=top + 1, label_id=label_id, condition=content.condition,
                         explanation=content.explanation, example=content.example,
                         source_tasks=list(prov.source_tasks), model=prov.model, prompt_version=prov.prompt_version,
                         evidence=prov.evidence, run_id=prov.run_id, reason=reason, created_at=stamp)
        s.add(new)
        ins.current_version, ins.updated_at = new.version, stamp
        return new

    def set_status(self, insight_id: str, status: Status | str) -> Insight:
        """Change an insight's status (not versioned; ``updated_at`` and the version stamp move)."""
        with self.transaction() as s:
            changes.serialize(s)
            ins, ver, label = self._current(s, insight_id, lock=True)
            if ins.status != Status(status).value:
                ins.status, ins.updated_at = Status(status).value, now_iso()
                changes.record(s, f"{insight_id} {ins.status}", insights=[ins])
            return insight_model(ins, ver, label)

    def delete(self, insight_id: str) -> None:
        """Remove an insight and its versions for good; its id is not reused, and a rollback
        cannot bring it back. Prefer retiring."""
        with self.transaction() as s:
            changes.serialize(s)
            ins = self._current(s, insight_id, lock=True)[0]
            s.delete(ins)
            changes.record(s, f"delete {insight_id}", deleted=[insight_id])

    def list(self, *, status: Status | str | Iterable[Status | str] | None = None,
             stage: Stage | str | None = None, label: LabelKey | tuple[str, str, str] | None = None,
             text: str | None = None) -> list[Insight]:
        """Current versions of insights, by id, filtered by status(es), stage, label and text.

        Args:
            status: One status or several; all when ``None``.
            stage: Only insights at this stage.
            label: Only insights with this ``(stage, level1, level2)`` label (matched canonically).
            text: Case-insensitive substring of the condition, explanation or example.
        """
        query = (select(InsightRow, VersionRow, LabelRow)
                 .join(VersionRow, (VersionRow.insight_id == InsightRow.id)
                       & (VersionRow.version == InsightRow.current_version))
                 .join(LabelRow, VersionRow.label_id == LabelRow.id)
                 .order_by(func.length(InsightRow.id), InsightRow.id))
        statuses = _statuses(status)
        if statuses is not None:
            query = query.where(InsightRow.status.in_(statuses))
        if stage is not None:
            query = query.where(LabelRow.stage == parse_stage(stage).value)
        if label is not None:
            key = LabelKey.of(*label)
            query = query.where(LabelRow.stage == key.stage.value, LabelRow.level1 == key.level1,
                                LabelRow.level2 == key.level2)
        if text:
            pattern = f"%{text.lower()}%"
            query = query.where(or_(*(func.lower(getattr(VersionRow, f)).like(pattern) for f in CONTENT)))
        with self._reading() as s:
            return [insight_model(*row) for row in s.execute(query).all()]

    def version_stamp(self) -> str:
        """A token that changes whenever any insight, version, status or label changes (for caches)."""
        with self._reading() as s:
            library_id = s.scalars(select(Meta.value).where(Meta.key == "library_id")).one()
            revision = s.scalars(select(Counter.value).where(Counter.name == "revision")).one()
            return f"{library_id}:{revision}"
