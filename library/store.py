"""``LibraryStore``: the SQL source of truth for insights, their versions, labels and learning records.

The store is put together from parts, one concept each: ``library.core`` (database,
transactions, insights and their versions), ``library.labels`` (the taxonomy),
``library.steps`` (the learner's verify, retire and merge, one transaction each),
``library.history`` (library versions and rollback), ``library.claims`` (leased task claims
and the merge lock for several workers) and ``library.records`` (tasks, attempts, evidence,
runs). This module adds opening (migrations, seed labels) and the JSONL export and import.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from library import changes, jsonl
from library.claims import Claims
from library.core import label_model
from library.db import bump, now_iso, raise_to
from library.errors import ImportLineError, InvalidInsightError
from library.history import History
from library.labels import Labels
from library.models import Status
from library.records import TrainingRecords
from library.steps import LearningSteps
from library.tables import InsightRow, TaskRow, VersionRow
from library.taxonomy import SEED_LABELS, LabelKey


def _add_text_tasks(s: Session, sources: dict[str, str]) -> int:
    """Store each ``task id → text`` the session lacks as a training task without an answer."""
    added = 0
    for task_id, text in sources.items():
        if s.get(TaskRow, task_id) is None:
            dataset, _, item_id = task_id.rpartition("/")
            s.add(TaskRow(id=task_id, dataset=dataset, item_id=item_id, text=text, answer=None, created_at=now_iso()))
            added += 1
    return added


class LibraryStore(Labels, LearningSteps, History, Claims, TrainingRecords):
    """The experience library's database.

    Args:
        location: A SQLAlchemy URL (``sqlite:///path.db``, ``postgresql+psycopg://...``), a plain
            file path (SQLite), or ``":memory:"``. The schema is created or migrated on open
            and the seed taxonomy labels are added if missing.
        actor: Who writes through this store (e.g. ``"learn R0003 on host-2"``); each library
            version it makes records it, unless a transaction names another.
    """

    def __init__(self, location: str | Path, *, actor: str | None = None) -> None:
        super().__init__(location, actor=actor)
        have = {label.key for label in self.labels(include_retired=True)}
        missing = [seed for seed in SEED_LABELS if LabelKey(seed.stage, seed.level1, seed.level2) not in have]
        if missing:
            with self.transaction(reason="seed labels"):
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
                label = label_model(self._current(s, current.id)[2])
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
        with self.transaction() as s, changes.step(s, f"import {len(records)} insights"):
            changes.serialize(s)
            _add_text_tasks(s, sources)
            for number, record in records:
                try:
                    with s.begin_nested():
                        self._import_record(s, record)
                except (IntegrityError, InvalidInsightError) as e:
                    raise ImportLineError(number, f"cannot store insight {record.id!r}: {e}") from e
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
        ins = InsightRow(id=record.id, status=record.status.value, current_version=record.version,
                         created_at=record.created_at, updated_at=record.updated_at)
        s.add(ins)
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
        changes.record(s, f"import {record.id}", insights=[ins])
