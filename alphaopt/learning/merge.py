"""Merging a verified insight with a near-duplicate, as one transaction.

Under the store's merge lock (one worker at a time finds, merges and re-verifies), the model
writes one lesson for the two; it is solved with on every source problem, with neither member
offered; only when each is right does ``store.merge`` add it as verified and retire both
members, all in one transaction. Nothing is stored before that, so a process killed at any
point leaves the library as it was before the merge or as it is after it. A merge that fails
its check is kept as a retired insight, for the record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alphaopt.agent import prompts
from alphaopt.agent.retrieval import insight_dict, told
from alphaopt.agent.state import Solution
from alphaopt.learning.ledger import Ledger
from alphaopt.llm.client import CallContext
from library import ConflictError, Insight, InsightDraft, LibraryStore, Status, Task
from library.index import LibraryIndex

#: The id a merged lesson carries in the prompts of its check, before it is stored.
PENDING_ID = "new"


def _lesson(insight: Insight) -> str:
    """The text two insights are compared on for a merge: condition and explanation."""
    return f"{insight.condition.strip()}: {insight.explanation.strip()}"


class Merger:
    """Finds near-duplicates and merges them (model calls through the learner's ledger)."""

    def __init__(self, store: LibraryStore, index: LibraryIndex, ledger: Ledger, distance: float, model: str,
                 solve: Callable[..., Solution], correct: Callable[[float | None, float], bool]) -> None:
        self.store, self.index, self.ledger, self.distance, self.model = store, index, ledger, distance, model
        self.solve, self.correct = solve, correct

    def near_duplicate(self, insight: Insight) -> Insight | None:
        """A verified insight that says nearly the same: its condition within ``distance`` of
        this one's, or, under the same taxonomy label, its whole lesson (condition and
        explanation) within it. Conditions alone miss a lesson learned twice in other words
        ("the problem involves counting" against "when ... counting, use integer variables")."""
        hits = [h for h in self.index.recall(insight.condition, k=3, stage=insight.stage)
                if h.insight_id != insight.id and h.distance <= self.distance]
        for hit in hits:
            found = self.store.get(hit.insight_id)
            if found.status == Status.VERIFIED:
                return found
        label = (insight.stage, insight.level1, insight.level2)
        peers = [i for i in self.store.list(status=Status.VERIFIED)
                 if i.id != insight.id and (i.stage, i.level1, i.level2) == label]
        if not peers:
            return None
        vectors = self.index.embedder.embed([_lesson(insight), *(_lesson(i) for i in peers)])
        distances = 1.0 - vectors[1:] @ vectors[0]
        best = int(distances.argmin())
        return peers[best] if distances[best] <= self.distance else None

    def merge(self, insight: Insight, run_id: str) -> int:
        """Merge a verified insight with a near-duplicate; returns 1 when a merge replaced them."""
        with self.store.merge_lock():
            return self._merge(self.store.get(insight.id), run_id)

    def _merge(self, insight: Insight, run_id: str) -> int:
        if insight.status != Status.VERIFIED:
            return 0  # merged or retired by another worker meanwhile
        other = self.near_duplicate(insight)
        if other is None:
            return 0
        members = [insight, other]
        sources = sorted({t for m in members for t in m.provenance.source_tasks})
        tasks = self.store.answered_tasks(sources)
        if len(tasks) < len(sources):  # e.g. an imported insight's sources
            return 0  # a merge could not be re-verified on them
        lessons = prompts.format_insights([insight_dict(m) for m in members])
        messages, sha = prompts.render("merge", lessons=lessons, stage=insight.stage.value,
                                       level1=insight.level1, level2=insight.level2)
        reply = self.ledger.complete(messages, prompt_name="merge", prompt_sha=sha, max_tokens=400, schema=InsightDraft,
                                     context=CallContext(run_id=run_id, node="merge"))
        if not isinstance(reply.parsed, InsightDraft):
            return 0
        draft = reply.parsed
        tell = any(told(m) for m in members)  # all members verified untold: the merge is checked untold too
        pending = {**insight_dict(members[0]), "id": PENDING_ID, "version": 1, "stage": draft.stage.value,
                   "label": f"{draft.level1} / {draft.level2}", "condition": draft.condition,
                   "explanation": draft.explanation, "example": draft.example, "told": tell}
        wins = sum(self._right(task, run_id, pending, members) for task in tasks)
        ids = [m.id for m in members]
        evidence: dict[str, Any] = {"sources": len(sources), "with": wins, **({} if tell else {"told": False})}
        provenance = {"source_tasks": sources, "model": self.model, "prompt_version": f"merge:{sha}", "run_id": run_id}
        if wins < len(sources):
            self.store.add_insight(draft, status=Status.RETIRED, provenance={
                **provenance, "evidence": {**evidence, "merge_of": ids, "merge_failed": True}})
            return 0
        try:
            merged = self.store.merge(ids, draft, evidence=evidence, provenance=provenance)
        except ConflictError:
            return 0  # a member was merged or retired by another worker meanwhile
        self.index.upsert([merged, *(self.store.get(i) for i in ids)])
        return 1

    def _right(self, task: Task, run_id: str, pending: dict[str, Any], members: list[Insight]) -> bool:
        """One solve of a source problem with the merged lesson alone (not its members)."""
        solution = self.solve(task, run_id, "verify_merge", 0, [pending], without=[m.id for m in members])
        return self.correct(solution.objective, float(task.answer))
