"""Library versions and rollback: the whole library's history, one version per committed change.

A mixin of :class:`library.store.LibraryStore`. Each version records the state (version
pointer and status) of the insights it changed and the state of the labels it changed
(``library.changes``), so the library at any version is, for each insight and label, its
latest recorded state at or before that version.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from library import changes
from library.core import StoreCore
from library.db import now_iso
from library.errors import NotFoundError
from library.models import LibraryVersion, Provenance, Status
from library.tables import (
    Counter,
    InsightRow,
    InsightStateRow,
    LabelRow,
    LabelStateRow,
    LibraryVersionRow,
    VersionRow,
)

_VERSION_FIELDS = ("label_id", "condition", "explanation", "example", "source_tasks", "model", "prompt_version",
                   "evidence", "run_id")


def _latest(table: Any, key: Any, number: int) -> Any:
    """The select of each key's latest state row at or before library version ``number``."""
    latest = (select(key.label("key"), func.max(table.library_version).label("n"))
              .where(table.library_version <= number).group_by(key).subquery())
    return select(table).join(latest, and_(key == latest.c.key, table.library_version == latest.c.n))


def _same_content(a: VersionRow, b: VersionRow) -> bool:
    return all(getattr(a, f) == getattr(b, f) for f in _VERSION_FIELDS)


class History(StoreCore):
    """Library versions and rollback (mixed into ``LibraryStore``)."""

    def library_version(self) -> int:
        """The number of the latest library version (0 for a library that never changed)."""
        with self._reading() as s:
            return int(s.scalars(select(Counter.value).where(Counter.name == changes.VERSION_KEY)).one())

    def library_versions(self, *, since: int = 0) -> list[LibraryVersion]:
        """The library's versions after number ``since``, oldest first.

        Args:
            since: Leave out versions up to this number (0: all of them).
        """
        with self._reading() as s:
            return self._versions(s, since)

    def _versions(self, s: Session, since: int, until: int | None = None) -> list[LibraryVersion]:
        def window(column: Any) -> Any:
            return (column > since) & (column <= until) if until is not None else column > since

        insights: dict[int, list[str]] = defaultdict(list)
        rows = s.execute(select(InsightStateRow.library_version, InsightStateRow.insight_id)
                         .where(window(InsightStateRow.library_version))
                         .order_by(InsightStateRow.library_version, func.length(InsightStateRow.insight_id),
                                   InsightStateRow.insight_id))
        for number, insight_id in rows:
            insights[number].append(insight_id)
        labels: dict[int, list[str]] = defaultdict(list)
        rows = s.execute(select(LabelStateRow.library_version, LabelRow.stage, LabelRow.level1, LabelRow.level2)
                         .join(LabelRow, LabelRow.id == LabelStateRow.label_id)
                         .where(window(LabelStateRow.library_version))
                         .order_by(LabelStateRow.library_version, LabelRow.stage, LabelRow.level1, LabelRow.level2))
        for number, *path in rows:
            labels[number].append("/".join(path))
        query = select(LibraryVersionRow).where(window(LibraryVersionRow.number)).order_by(LibraryVersionRow.number)
        return [LibraryVersion(number=v.number, created_at=v.created_at, reason=v.reason, actor=v.actor,
                               insights=tuple(insights[v.number]), labels=tuple(labels[v.number]))
                for v in s.scalars(query)]

    def rollback(self, to_version: int, *, reason: str | None = None) -> LibraryVersion:
        """Restore the library's content to what it was at library version ``to_version``.

        Not destructive: the restore is itself a new library version, and every insight keeps
        its history. An insight whose content changed since then gets a new version with that
        version's label, content and provenance (so version numbers only grow); each status
        goes back to its status then. Insights added after ``to_version`` are retired; labels
        get back their display name, definition and retirement, and labels added after it are
        retired. Deleted insights cannot come back. A rollback can itself be undone by rolling
        back to the version before it.

        Args:
            to_version: A number from :meth:`library_versions`.
            reason: The new version's reason (default: ``"rollback to library version N"``).

        Returns:
            The library version that the rollback wrote.

        Raises:
            NotFoundError: No library version ``to_version``.
        """
        note = reason or f"rollback to library version {to_version}"
        with self.transaction() as s, changes.step(s, note):
            changes.serialize(s)
            if s.get(LibraryVersionRow, to_version) is None:
                raise NotFoundError(f"no library version {to_version!r}; library_versions() lists them")
            insights = self._restore_insights(s, to_version)
            labels = self._restore_labels(s, to_version)
            number = changes.record(s, note, insights=insights, labels=labels)
            return self._versions(s, number - 1, number)[0]

    def _restore_insights(self, s: Session, to_version: int) -> list[InsightRow]:
        targets = {t.insight_id: t for t in s.scalars(_latest(InsightStateRow, InsightStateRow.insight_id, to_version))}
        changed = []
        for ins in s.scalars(select(InsightRow).order_by(InsightRow.id)):
            target = targets.get(ins.id)
            if target is None or target.status == changes.DELETED:  # added after to_version
                status = Status.RETIRED.value
            else:
                status = target.status
                was, now = s.get(VersionRow, (ins.id, target.version)), s.get(VersionRow, (ins.id, ins.current_version))
                if was is not None and now is not None and not _same_content(was, now):
                    prov = Provenance(source_tasks=tuple(was.source_tasks), model=was.model,
                                      prompt_version=was.prompt_version, evidence=was.evidence, run_id=was.run_id)
                    self._write_version(s, ins, was.label_id, was, prov,
                                        f"rollback to library version {to_version} (as version {was.version})")
                    changed.append(ins)
            if ins.status != status:
                ins.status, ins.updated_at = status, now_iso()
                if not changed or changed[-1] is not ins:
                    changed.append(ins)
        return changed

    def _restore_labels(self, s: Session, to_version: int) -> list[LabelRow]:
        targets = {t.label_id: t for t in s.scalars(_latest(LabelStateRow, LabelStateRow.label_id, to_version))}
        changed = []
        for row in s.scalars(select(LabelRow).order_by(LabelRow.id)):
            target = targets.get(row.id)
            display, definition = (target.display, target.definition) if target else (row.display, row.definition)
            retired = target.retired if target else True  # added after to_version
            if (row.display, row.definition, row.retired_at is not None) != (display, definition, retired):
                row.display, row.definition = display, definition
                row.retired_at = (row.retired_at or now_iso()) if retired else None
                changed.append(row)
        return changed
