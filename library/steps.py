"""The learner's steps as single transactions: verify, retire and merge.

A mixin of :class:`library.store.LibraryStore`. Each method commits as one transaction (or
joins the caller's ``store.transaction()``), so a process killed at any point leaves the
library as it was just before the step or just after it, never in between.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Unpack

from library import changes
from library.core import StoreCore
from library.errors import ConflictError, InvalidInsightError
from library.models import (
    Insight,
    InsightDraft,
    JsonDict,
    Provenance,
    RetireChanges,
    Status,
)


class LearningSteps(StoreCore):
    """Verify, retire and merge (mixed into ``LibraryStore``)."""

    def verify(self, insight_id: str, evidence: JsonDict, *, reason: str = "counterfactual check") -> Insight:
        """Mark an insight verified with the evidence that verified it, in one transaction: a new
        version whose evidence is the old one updated with ``evidence``, then the verified status.

        Several candidates verified together commit together inside ``store.transaction()``.

        Args:
            insight_id: A candidate (or an already verified insight, re-verified).
            evidence: What the check found, e.g. ``{"without": 0, "with": 2, "k": 2}``.
            reason: The new version's note.

        Returns:
            The verified current version.

        Raises:
            NotFoundError: No such insight.
            InvalidInsightError: It is retired (a retired insight stays retired; add it anew).
        """
        with self.transaction() as s, changes.step(s, f"verify {insight_id}"):
            changes.serialize(s)
            ins = self._current(s, insight_id, lock=True)[0]
            if ins.status == Status.RETIRED.value:
                raise InvalidInsightError(f"{insight_id!r} is retired and cannot be verified; add the lesson again "
                                          "as a new candidate, or roll the library back to before it was retired")
            current = self.get(insight_id)
            self.revise(insight_id, evidence={**current.provenance.evidence, **evidence}, reason=reason)
            return self.set_status(insight_id, Status.VERIFIED)

    def retire(self, insight_id: str, *, reason: str, evidence: dict[str, Any],
               **changes_: Unpack[RetireChanges]) -> Insight:
        """Retire an insight in one transaction: a new version whose evidence gains ``evidence``
        and whose note is ``reason`` (with any other ``changes_``), then the retired status.

        Args:
            insight_id: The insight to retire.
            reason: Why, e.g. ``"rejected by the counterfactual check"``.
            evidence: Added to the version's evidence (earlier keys are kept unless replaced).
            **changes_: Other fields to change in the same version (see ``revise``).
        """
        with self.transaction() as s, changes.step(s, f"retire {insight_id}: {reason}"):
            changes.serialize(s)
            self._current(s, insight_id, lock=True)
            current = self.get(insight_id)
            self.revise(insight_id, evidence={**current.provenance.evidence, **evidence}, reason=reason, **changes_)
            return self.set_status(insight_id, Status.RETIRED)

    def merge(self, member_ids: Sequence[str], merged: InsightDraft, *, evidence: JsonDict,
              provenance: Provenance | dict[str, Any] | None = None) -> Insight:
        """Replace near-duplicate insights by one merged insight, in one transaction.

        The merged insight is added as verified; its evidence is ``evidence`` plus
        ``"merge_of": member_ids`` and its source tasks default to the members' together. Each
        member is retired with a new version whose evidence gains ``"merged_into": <new id>``.
        Verify the merged draft before calling this (nothing is stored until then); a merge
        that failed its check can be kept as ``add_insight(draft, status="retired", ...)``.

        Members are locked first, so of two workers merging overlapping insights, one merges
        and the other gets :class:`ConflictError` (take ``store.merge_lock()`` around the whole
        find-merge-verify step so that the loser does not spend the model calls).

        Args:
            member_ids: Two or more distinct insight ids, none retired.
            merged: The merged insight's label and content.
            evidence: The merge check's evidence, e.g. ``{"sources": 3, "with": 3}``.
            provenance: Model, prompt version, run id and (optionally) source tasks.

        Returns:
            The merged insight (verified).

        Raises:
            InvalidInsightError: Fewer than two distinct members.
            NotFoundError: A member does not exist.
            ConflictError: A member is already retired (merged by another worker, say).
        """
        ids = list(dict.fromkeys(member_ids))
        if len(ids) < 2:
            raise InvalidInsightError(f"a merge needs two or more distinct insights, got {ids}; "
                                      "use revise() to change a single insight")
        prov = Provenance.model_validate(provenance or {})
        with self.transaction() as s, changes.step(s, f"merge {', '.join(ids)}"):
            changes.serialize(s)
            rows = {i: self._current(s, i, lock=True) for i in sorted(ids)}  # one lock order for every worker
            gone = [i for i in ids if rows[i][0].status == Status.RETIRED.value]
            if gone:
                raise ConflictError(f"cannot merge {ids}: {gone} already retired (merged or retired by another "
                                    "worker); list the verified insights again and merge what is left")
            sources = prov.source_tasks or tuple(sorted({t for i in ids for t in rows[i][1].source_tasks}))
            new = self.add_insight(merged, status=Status.VERIFIED, provenance=prov.model_copy(update={
                "source_tasks": sources, "evidence": {**prov.evidence, **evidence, "merge_of": ids}}))
            for i in ids:
                self.retire(i, reason=f"merged into {new.id}", evidence={"merged_into": new.id})
            return self.get(new.id)
