"""The taxonomy side of ``LibraryStore``: labels, their definitions, re-tagging and retirement.

A mixin of :class:`library.store.LibraryStore`. Each change is recorded as a library version,
so a rollback restores labels with the insights that use them.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from library import changes
from library.core import StoreCore, label_model, label_query
from library.db import now_iso
from library.errors import ConflictError, InvalidInsightError, NotFoundError
from library.models import Insight, Label, Status
from library.tables import InsightRow, LabelRow, VersionRow
from library.taxonomy import LabelKey, Stage, parse_stage

LabelLike = LabelKey | tuple[str, str, str]


def _key(label: LabelLike) -> LabelKey:
    return LabelKey.of(*label)


class Labels(StoreCore):
    """Taxonomy labels (mixed into ``LibraryStore``)."""

    def ensure_label(self, stage: Stage | str, level1: str, level2: str, display: str | None = None,
                     definition: str | None = None, *, origin: str = "learned") -> Label:
        """The label at ``stage/level1/level2`` (matched canonically), created if missing.

        An existing label keeps its display name and definition (change them with
        :meth:`define_label`); a retired one is brought back into use.

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
            changes.serialize(s)
            return label_model(self._label_row(s, key, display or " ".join(level2.split()), definition or "", origin))

    def label(self, label: LabelLike) -> Label:
        """The label at ``(stage, level1, level2)`` (matched canonically), retired or not.

        Raises:
            NotFoundError: The library has no such label.
        """
        with self._reading() as s:
            return label_model(self._existing_label(s, _key(label)))

    def _existing_label(self, s: Session, key: LabelKey) -> LabelRow:
        row = s.scalar(label_query(key))
        if row is None:
            raise NotFoundError(f"no label {key.path!r}; create it with ensure_label() first")
        return row

    def labels(self, stage: Stage | str | None = None, *, include_retired: bool = False) -> list[Label]:
        """Taxonomy labels (of ``stage``), ordered by stage, level 1, level 2.

        Args:
            stage: Only labels of this stage; all when ``None``.
            include_retired: Also the labels retired by :meth:`retire_label`.
        """
        query = select(LabelRow).order_by(LabelRow.stage, LabelRow.level1, LabelRow.level2)
        if stage is not None:
            query = query.where(LabelRow.stage == parse_stage(stage).value)
        if not include_retired:
            query = query.where(LabelRow.retired_at.is_(None))
        with self._reading() as s:
            return [label_model(r) for r in s.scalars(query)]

    def define_label(self, label: LabelLike, definition: str, *, display: str | None = None) -> Label:
        """Change a label's definition (and display name); recorded as a library version.

        Args:
            label: The label's ``(stage, level1, level2)``, in any spelling.
            definition: What the label covers; recall matches problems against it.
            display: A new display name; the old one stays when omitted.

        Raises:
            NotFoundError: No such label; create it with :meth:`ensure_label`.
            InvalidInsightError: The definition is blank.
        """
        if not definition.strip():
            raise InvalidInsightError("a label definition cannot be blank; say in a sentence what the label covers")
        key = _key(label)
        with self.transaction() as s:
            changes.serialize(s)
            row = self._existing_label(s, key)
            new_display = " ".join(display.split()) if display and display.strip() else row.display
            if (row.definition, row.display) != (definition, new_display):
                row.definition, row.display = definition, new_display
                changes.record(s, f"label {key.path} defined", labels=[row])
            return label_model(row)

    def _in_use(self, s: Session, label_id: int) -> list[str]:
        """Ids of the candidate or verified insights whose current version carries the label."""
        query = (select(InsightRow.id)
                 .join(VersionRow, (VersionRow.insight_id == InsightRow.id)
                       & (VersionRow.version == InsightRow.current_version))
                 .where(VersionRow.label_id == label_id, InsightRow.status != Status.RETIRED.value)
                 .order_by(InsightRow.id))
        return list(s.scalars(query))

    def retire_label(self, label: LabelLike) -> Label:
        """Retire a label that no insight in use carries any more (after re-tagging them).

        Retired insights may still carry it (their history stays readable). A retired label
        leaves :meth:`labels` and comes back when an insight is given it again.

        Args:
            label: The label's ``(stage, level1, level2)``, in any spelling.

        Raises:
            NotFoundError: No such label.
            ConflictError: A candidate or verified insight still carries it.
        """
        key = _key(label)
        with self.transaction() as s:
            changes.serialize(s)
            row = self._existing_label(s, key)
            if row.retired_at is not None:
                return label_model(row)
            users = self._in_use(s, row.id)
            if users:
                raise ConflictError(f"label {key.path!r} is still on {users}; move them with relabel() "
                                    "(or retire them) before retiring the label")
            row.retired_at = now_iso()
            changes.record(s, f"label {key.path} retired", labels=[row])
            return label_model(row)

    def relabel(self, insight_id: str, label: LabelLike, *, reason: str | None = None) -> Insight:
        """Give an insight another existing label, as a new version (content and provenance kept).

        Args:
            insight_id: The insight to re-tag.
            label: The new label's ``(stage, level1, level2)``; it must exist and be in use or
                new (create it with :meth:`ensure_label`, which also brings a retired one back).
            reason: Why (default: ``"relabel to <path>"``).

        Returns:
            The new current version (the current one unchanged when it already has the label).

        Raises:
            NotFoundError: No such insight or label.
            InvalidInsightError: The label is retired.
        """
        key = _key(label)
        with self.transaction() as s, changes.step(s, f"relabel {insight_id} to {key.path}"):
            changes.serialize(s)
            row = self._existing_label(s, key)
            if row.retired_at is not None:
                raise InvalidInsightError(f"label {key.path!r} is retired; bring it back with ensure_label() "
                                          "or choose a label from labels()")
            return self.revise(insight_id, stage=row.stage, level1=row.level1, level2=row.level2,
                               reason=reason or f"relabel to {key.path}")
