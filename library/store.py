"""``LibraryStore``: the SQL source of truth for insights, their versions, labels and learning records.

Insights get stable ids (``"I0001"``, ...) from a counter, never from ``max(id)``, so a retired
or deleted insight's id is never handed out again. Versions are immutable: a revision writes a
new version row and moves the insight's pointer. Every method joins an open
``store.transaction()``, so one learning step commits (or rolls back) as a whole.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Any, Unpack

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from library import jsonl
from library.db import Transactions, bump, make_engine, now_iso, raise_to, to_url
from library.errors import ImportLineError, InvalidInsightError, NotFoundError
from library.migrations import migrate
from library.models import (
    Insight,
    InsightChanges,
    InsightDraft,
    Label,
    Provenance,
    Status,
)
from library.records import TrainingRecords
from library.tables import Counter, InsightRow, LabelRow, Meta, TaskRow, VersionRow
from library.taxonomy import SEED_LABELS, LabelKey, Stage, parse_stage

_CONTENT = ("condition", "explanation", "example")
_PROVENANCE = ("source_tasks", "model", "prompt_version", "evidence", "run_id")
_LABEL = ("stage", "level1", "level2")


def _label(row: LabelRow) -> Label:
    return Label(stage=parse_stage(row.stage), level1=row.level1, level2=row.level2, display=row.display,
                 definition=row.definition, origin=row.origin)


def _insight(ins: InsightRow, ver: VersionRow, label: LabelRow) -> Insight:
    return Insight(
        id=ins.id, version=ver.version, is_current=ver.version == ins.current_version, status=Status(ins.status),
        stage=parse_stage(label.stage), level1=label.level1, level2=label.level2,
        condition=ver.condition, explanation=ver.explanation, example=ver.example,
        provenance=Provenance(source_tasks=tuple(ver.source_tasks), model=ver.model,
                              prompt_version=ver.prompt_version, evidence=ver.evidence, run_id=ver.run_id),
        reason=ver.reason, created_at=ins.created_at, version_created_at=ver.created_at, updated_at=ins.updated_at,
    )


def _add_text_tasks(s: Session, sources: dict[str, str]) -> int:
    """Store each ``task id → text`` the session lacks as a training task without an answer."""
    added = 0
    for task_id, text in sources.items():
        if s.get(TaskRow, task_id) is None:
            dataset, _, item_id = task_id.rpartition("/")
            s.add(TaskRow(id=task_id, dataset=dataset, item_id=item_id, text=text, answer=None, created_at=now_iso()))
            added += 1
    return added


def _statuses(status: Status | str | Iterable[Status | str] | None) -> list[str] | None:
    if status is None:
        return None
    values = [status] if isinstance(status, str) else list(status)
    return [Status(v).value for v in values]


class LibraryStore(TrainingRecords):
    """The experience library's database.

    Args:
        location: A SQLAlchemy URL (``sqlite:///path.db``, ``postgresql+psycopg://...``), a plain
            file path (SQLite), or ``":memory:"``. The schema is created or migrated on open
            and the seed taxonomy labels are added if missing.
    """

    def __init__(self, location: str | Path) -> None:
        self.url = to_url(location)
        self.engine = make_engine(self.url)
        migrate(self.engine)
        self._transactions = Transactions(self.engine)
        have = {label.key for label in self.labels()}
        missing = [seed for seed in SEED_LABELS if LabelKey(seed.stage, seed.level1, seed.level2) not in have]
        if missing:
            with self.transaction():
                for seed in missing:
                    self.ensure_label(seed.stage, seed.level1, seed.level2, seed.display, seed.definition,
                                      origin="seed")

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def __enter__(self) -> LibraryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """Open a transaction, or join the one already open in this thread.

        Everything the store writes inside the ``with`` block commits together at its end, or
        not at all if the block raises. The yielded ``Session`` may also be used directly.
        """
        with self._transactions() as session:
            yield session

    def _reading(self) -> AbstractContextManager[Session]:
        return self._transactions(write=False)

    # -- taxonomy

    def ensure_label(self, stage: Stage | str, level1: str, level2: str, display: str | None = None,
                     definition: str | None = None, *, origin: str = "learned") -> Label:
        """The label at ``stage/level1/level2`` (matched canonically), created if missing.

        An existing label keeps its display name and definition.

        Args:
            stage: One of the three stages.
            level1: The level-1 label, in any spelling.
            level2: The level-2 label, in any spelling.
            display: Display name for a new label (default: ``level2`` as given, trimmed).
            definition: Definition for a new label (default: empty).
            origin: ``"seed"`` or ``"learned"``.
        """
        key = LabelKey.of(stage, level1, level2)
        with self.transaction() as s:
            return _label(self._label_row(s, key, display or " ".join(level2.split()), definition or "", origin))

    def _label_row(self, s: Session, key: LabelKey, display: str, definition: str, origin: str) -> LabelRow:
        query = select(LabelRow).where(LabelRow.stage == key.stage.value, LabelRow.level1 == key.level1,
                                       LabelRow.level2 == key.level2)
        row = s.scalar(query)
        if row is not None:
            return row
        try:
            with s.begin_nested():  # another writer may add the same label concurrently
                row = LabelRow(stage=key.stage.value, level1=key.level1, level2=key.level2, display=display,
                               definition=definition, origin=origin, created_at=now_iso())
                s.add(row)
            return row
        except IntegrityError:
            return s.scalars(query).one()

    def labels(self, stage: Stage | str | None = None) -> list[Label]:
        """All taxonomy labels (of ``stage``), ordered by stage, level 1, level 2."""
        query = select(LabelRow).order_by(LabelRow.stage, LabelRow.level1, LabelRow.level2)
        if stage is not None:
            query = query.where(LabelRow.stage == parse_stage(stage).value)
        with self._reading() as s:
            return [_label(r) for r in s.scalars(query)]

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
            bump(s, "revision")
            s.flush()
            return _insight(ins, ver, label)

    def _current(self, s: Session, insight_id: str) -> tuple[InsightRow, VersionRow, LabelRow]:
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
            return _insight(*self._current(s, insight_id))

    def versions(self, insight_id: str) -> list[Insight]:
        """Every version of ``insight_id``, oldest first."""
        with self._reading() as s:
            ins = self._current(s, insight_id)[0]
            rows = s.execute(select(VersionRow, LabelRow).join(LabelRow, VersionRow.label_id == LabelRow.id)
                             .where(VersionRow.insight_id == insight_id).order_by(VersionRow.version)).all()
            return [_insight(ins, ver, label) for ver, label in rows]

    def revise(self, insight_id: str, **changes: Unpack[InsightChanges]) -> Insight:
        """Write a new immutable version of an insight with some fields changed.

        Args:
            insight_id: The insight to revise.
            **changes: New values for label (``stage``/``level1``/``level2``), content
                (``condition``/``explanation``/``example``) or provenance (``source_tasks``,
                ``model``, ``prompt_version``, ``evidence``, ``run_id`` — each replaces the old
                value), and ``reason``, why this version exists.

        Returns:
            The new current version, or the unchanged current one when nothing differs.
        """
        unknown = set(changes) - {*_CONTENT, *_PROVENANCE, *_LABEL, "reason"}
        if unknown:
            raise InvalidInsightError(f"revise() cannot change {sorted(unknown)}; see InsightChanges for the fields")
        with self.transaction() as s:
            ins, ver, label = self._current(s, insight_id)
            old = _insight(ins, ver, label)
            draft = InsightDraft.model_validate(
                {k: changes.get(k, getattr(old, k)) for k in (*_LABEL, *_CONTENT)}
            )
            prov = Provenance.model_validate(
                {**old.provenance.model_dump(), **{k: v for k, v in changes.items() if k in _PROVENANCE}}
            )
            same_content = all(getattr(draft, k) == getattr(old, k) for k in _CONTENT)
            if same_content and draft.label == old.label and prov == old.provenance:
                return old
            new_label = self._label_row(s, draft.label, draft.level2, "", "learned")
            stamp = now_iso()
            new = VersionRow(insight_id=insight_id, version=ins.current_version + 1, label_id=new_label.id,
                             condition=draft.condition, explanation=draft.explanation, example=draft.example,
                             source_tasks=list(prov.source_tasks), model=prov.model,
                             prompt_version=prov.prompt_version, evidence=prov.evidence, run_id=prov.run_id,
                             reason=changes.get("reason"), created_at=stamp)
            s.add(new)
            ins.current_version, ins.updated_at = new.version, stamp
            bump(s, "revision")
            s.flush()
            return _insight(ins, new, new_label)

    def set_status(self, insight_id: str, status: Status | str) -> Insight:
        """Change an insight's status (not versioned; ``updated_at`` and the version stamp move)."""
        with self.transaction() as s:
            ins, ver, label = self._current(s, insight_id)
            if ins.status != Status(status).value:
                ins.status, ins.updated_at = Status(status).value, now_iso()
                bump(s, "revision")
                s.flush()
            return _insight(ins, ver, label)

    def retire(self, insight_id: str, *, reason: str, evidence: dict[str, Any],
               **changes: Unpack[InsightChanges]) -> Insight:
        """Retire an insight in one transaction: a new version whose evidence gains ``evidence``
        and whose note is ``reason`` (with any other ``changes``), then the retired status."""
        with self.transaction():
            current = self.get(insight_id)
            self.revise(insight_id, evidence={**current.provenance.evidence, **evidence}, reason=reason, **changes)
            return self.set_status(insight_id, Status.RETIRED)

    def delete(self, insight_id: str) -> None:
        """Remove an insight and its versions for good; its id is not reused. Prefer retiring."""
        with self.transaction() as s:
            ins = self._current(s, insight_id)[0]
            s.delete(ins)
            bump(s, "revision")

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
            query = query.where(or_(*(func.lower(getattr(VersionRow, f)).like(pattern) for f in _CONTENT)))
        with self._reading() as s:
            return [_insight(*row) for row in s.execute(query).all()]

    def version_stamp(self) -> str:
        """A token that changes whenever any insight, version or status changes (for caches)."""
        with self._reading() as s:
            library_id = s.scalars(select(Meta.value).where(Meta.key == "library_id")).one()
            revision = s.scalars(select(Counter.value).where(Counter.name == "revision")).one()
            return f"{library_id}:{revision}"

    # -- JSONL

    def export_jsonl(self, target: str | Path | IO[str], *,
                     status: Status | str | Collection[Status | str] | None = (Status.VERIFIED,),
                     header: dict[str, Any] | None = None) -> int:
        """Write insights (with their history) as reviewable JSONL, sorted by id.

        Args:
            target: A path or an open text file.
            status: Which statuses to export; ``None`` exports all.
            header: Written first as ``{"_header": header}`` when given, with
                ``source_problems`` added (when there are any): the text of each training task
                that an exported version names as a source and this store holds (retrieval compares a new
                problem with them, so they travel with the library).

        Returns:
            The number of insights written.
        """
        with self._reading() as s:
            records = []
            sources: set[str] = set()
            for current in self.list(status=status):
                versions = self.versions(current.id)
                history = [v for v in versions if not v.is_current]
                label = _label(self._current(s, current.id)[2])
                records.append(jsonl.to_record(current, history, label))
                sources.update(t for v in versions for t in v.provenance.source_tasks)
            if header is not None:
                rows = s.scalars(select(TaskRow).where(TaskRow.id.in_(sorted(sources)))).all()
                if rows:
                    header = {**header, jsonl.SOURCE_PROBLEMS: {r.id: r.text for r in rows}}
        return jsonl.write(target, records, header)

    def import_jsonl(self, source: str | Path | IO[str]) -> int:
        """Add the insights of an exported file, keeping their ids, versions and timestamps.

        The header's ``source_problems`` become training tasks (text only, no answer) where the
        store does not hold them yet.

        The whole file is validated first and written in one transaction: a bad line raises
        :class:`ImportLineError` naming it, and nothing from the file is stored.

        Returns:
            The number of insights imported.
        """
        header, records = jsonl.read(source)
        sources = jsonl.source_problems(header)
        with self.transaction() as s:
            _add_text_tasks(s, sources)
            for number, record in records:
                try:
                    with s.begin_nested():
                        self._import_record(s, record)
                except (IntegrityError, InvalidInsightError) as e:
                    raise ImportLineError(number, f"cannot store insight {record.id!r}: {e}") from e
            if records:
                bump(s, "revision")
        return len(records)

    def add_source_problems(self, source: str | Path | IO[str]) -> int:
        """Store the texts of the source problems an export's header carries, for the insights this
        store holds that name them and where the store lacks them (a library imported before
        exports carried them). Returns how many were added.
        """
        with self.transaction() as s:
            named = {t for v in s.scalars(select(VersionRow)) for t in v.source_tasks}
            missing = named - set(s.scalars(select(TaskRow.id).where(TaskRow.id.in_(sorted(named)))))
            if not missing:  # the usual case: nothing to read
                return 0
            sources = jsonl.source_problems(jsonl.read_header(source))
            added = _add_text_tasks(s, {t: text for t, text in sources.items() if t in missing})
            if added:
                bump(s, "revision")  # retrieval's caches key on the revision
        return added

    def _import_record(self, s: Session, record: jsonl.InsightRecord) -> None:
        if s.get(InsightRow, record.id) is not None:
            raise InvalidInsightError(f"this library already holds {record.id!r}; import into a fresh library")
        s.add(InsightRow(id=record.id, status=record.status.value, current_version=record.version,
                         created_at=record.created_at, updated_at=record.updated_at))
        # the current label first, so a new label gets the file's display name and definition
        self._label_row(s, LabelKey.of(record.stage, record.level1, record.level2), record.label.display,
                        record.label.definition, "learned")
        for v in [*record.history, record]:
            label = self._label_row(s, LabelKey.of(v.stage, v.level1, v.level2), v.level2, "", "learned")
            p = v.provenance
            s.add(VersionRow(insight_id=record.id, version=v.version, label_id=label.id, condition=v.condition,
                             explanation=v.explanation, example=v.example, source_tasks=list(p.source_tasks),
                             model=p.model, prompt_version=p.prompt_version, evidence=p.evidence, run_id=p.run_id,
                             reason=v.reason, created_at=v.version_created_at))
        s.flush()
        raise_to(s, "insight", jsonl.id_number(record.id))
