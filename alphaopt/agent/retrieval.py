"""The agent's view of the experience library: cheap, capped retrieval.

For each problem: taxonomy labels from the problem (embedding similarity to the label
definitions, no model call) → vector recall of candidate conditions (within those labels, plus
the nearest overall; an insight whose source problems the library holds is recalled instead for
problems like them, ``retrieval_source_similarity``) → one LLM applicability check over a
short, capped list → the chosen insights, with their ids. An insight whose condition quotes the
text (``when the text says "..."``, ``applied.quote``) is recalled and chosen wherever its quote
matches the problem, with no model check: its condition is a test the code can run. So is one
recalled for a near-copy of a problem it was verified on (``retrieval_source_twin``): the solver
already showed it helps there, and the model's check would only add a chance to miss it. The whole
library never reaches the model. What was retrieved and what was chosen is recorded as
evidence; results are cached per (problem, library version).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from alphaopt.agent import applied, prompts
from alphaopt.config import Settings
from alphaopt.llm.client import CallContext, LLMClient
from library import Insight, LibraryStore, Status
from library.errors import NotFoundError
from library.index import LibraryIndex

_IDS = re.compile(r"\bI\d{4,}\b")


def told(insight: Insight) -> bool:
    """False for an insight whose check passed with its edit applied and its lesson kept out of
    the prompt (evidence ``told: false``, ``Checker.check``): the code makes its edit, the model
    is not told."""
    return insight.provenance.evidence.get("told", True) is not False


def insight_dict(insight: Insight) -> dict[str, Any]:
    """What the agent's state and prompts keep of an insight (``told``: see ``told``)."""
    return {
        "id": insight.id, "version": insight.version, "stage": insight.stage.value,
        "label": f"{insight.level1} / {insight.level2}", "condition": insight.condition,
        "explanation": insight.explanation, "example": insight.example,
        "told": told(insight),
    }


def open_store(settings: Settings) -> LibraryStore:
    """Open the store named by the settings; load the starter library into an empty store (or,
    into one that loaded it before its export carried source problems, just those texts)."""
    store = LibraryStore(settings.library_url or settings.library_db)
    starter = settings.experimental.starter_library
    if starter and Path(starter).is_file():
        if not store.list(status=None):
            store.import_jsonl(starter)
        else:
            store.add_source_problems(starter)
    return store


def open_library(settings: Settings) -> tuple[LibraryStore, LibraryIndex]:
    """Open the store and its Chroma index (synced with the store)."""
    store = open_store(settings)
    index = LibraryIndex(settings.chroma_url or settings.chroma_dir)
    index.sync(store)
    return store, index


class LibraryRetriever:
    """Implements the agent's ``InsightSource`` over a library store and its index."""

    def __init__(self, settings: Settings, store: LibraryStore, index: LibraryIndex) -> None:
        self.settings = settings
        self.store = store
        self.index = index
        self._cache: dict[tuple[str, str, frozenset[str]], list[dict[str, Any]]] = {}
        self._labels: tuple[str, list[tuple[str, str, str]], np.ndarray] | None = None
        self._sources: tuple[str, dict[str, np.ndarray]] | None = None  # (stamp, id → source vectors)
        self._quotes: tuple[str, list[tuple[str, re.Pattern[str]]]] | None = None  # (stamp, id → quote pattern)
        self._lock = threading.Lock()

    @classmethod
    def open(cls, settings: Settings) -> LibraryRetriever:
        """The retriever for the configured library."""
        store, index = open_library(settings)
        return cls(settings, store, index)

    def close(self) -> None:
        """Release the store and the index."""
        self.index.close()
        self.store.close()

    def labels_for(self, problem: str | np.ndarray, n: int) -> list[tuple[str, str, str]]:
        """The ``n`` taxonomy labels whose definitions are nearest to the problem (its text or
        its embedding)."""
        stamp = self.store.version_stamp()
        with self._lock:
            if self._labels is None or self._labels[0] != stamp:
                labels = self.store.labels()
                keys = [(lab.stage.value, lab.level1, lab.level2) for lab in labels]
                texts = [f"{lab.display}: {lab.definition}" for lab in labels]
                self._labels = (stamp, keys, self.index.embedder.embed(texts) if texts else np.zeros((0, 384)))
            _, keys, vectors = self._labels
        if not keys:
            return []
        scores = vectors @ self._embedding(problem)
        return [keys[i] for i in np.argsort(-scores)[:n]]

    def _embedding(self, problem: str | np.ndarray) -> np.ndarray:
        return self.index.embedder.embed([problem])[0] if isinstance(problem, str) else problem

    def candidates(self, problem: str | np.ndarray) -> list[Insight]:
        """Verified insights near the problem, nearest first, capped.

        An insight is near when its condition is (cosine distance at most
        ``retrieval_max_distance``). Where the library holds the texts of the problems an insight
        was learned or verified on, those decide instead: it is near when the problem is at
        least ``retrieval_source_similarity`` similar to one of them, whatever its condition
        says (a condition the model wrote in general words is near everything and far from its
        own sources). 0 turns that off. An insight verified untold is never a candidate: it acts
        only where its quote matches (``quoted``), through the code's edit.
        """
        s = self.settings
        vector = self._embedding(problem)  # once: the recalls, the labels and the sources all compare it
        hits = self.index.recall(vector, k=s.experimental.retrieval_k)
        labels = self.labels_for(vector, s.experimental.retrieval_labels)
        if labels:
            hits += self.index.recall(vector, k=s.experimental.retrieval_k, labels=labels)
        best: dict[str, float] = {}
        for hit in hits:
            if hit.distance <= s.experimental.retrieval_max_distance:
                best[hit.insight_id] = min(hit.distance, best.get(hit.insight_id, 2.0))
        if s.experimental.retrieval_source_similarity > 0:
            for insight_id, similarity in self.source_similarities(vector).items():
                if similarity >= s.experimental.retrieval_source_similarity:
                    best[insight_id] = min(1.0 - similarity, best.get(insight_id, 2.0))
                else:
                    best.pop(insight_id, None)
        found: list[Insight] = []
        for insight_id in sorted(best, key=best.__getitem__):
            insight = self.store.get(insight_id)
            if insight.status == Status.VERIFIED and told(insight):  # untold: by its quote only
                found.append(insight)
            if len(found) == s.experimental.retrieval_check_cap:
                break
        return found

    def quoted(self, problem: str) -> list[str]:
        """The verified insights whose condition quotes the text and whose quote matches
        ``problem`` (``applied.pattern``), in id order."""
        stamp = self.store.version_stamp()
        with self._lock:
            cached = self._quotes
        if cached is None or cached[0] != stamp:
            patterns = [(i.id, applied.pattern(q)) for i in self.store.list(status=Status.VERIFIED)
                        if (q := applied.quote(i.condition)) is not None]
            cached = (stamp, patterns)
            with self._lock:
                self._quotes = cached
        return [insight_id for insight_id, found in cached[1] if found.search(problem)]

    def twinned(self, problem: str | np.ndarray) -> set[str]:
        """The verified insights one of whose source problems ``problem`` nearly copies (cosine
        similarity at least ``retrieval_source_twin``; learning's shingle twins all reach 0.99)."""
        twin = self.settings.experimental.retrieval_source_twin
        return {i for i, similarity in self.source_similarities(problem).items() if similarity >= twin}

    def source_similarities(self, problem: str | np.ndarray) -> dict[str, float]:
        """For each verified insight whose source problems the library holds (some of them):
        the highest cosine similarity of ``problem`` (its text or its embedding) to their texts."""
        vectors = self._source_vectors()
        if not vectors:
            return {}
        query = self._embedding(problem)
        return {insight_id: float((matrix @ query).max()) for insight_id, matrix in vectors.items()}

    def _source_vectors(self) -> dict[str, np.ndarray]:
        """The embedded source-problem texts of each verified insight, per library version."""
        stamp = self.store.version_stamp()
        with self._lock:
            if self._sources is not None and self._sources[0] == stamp:
                return self._sources[1]
        texts: dict[str, str] = {}
        owners: dict[str, list[str]] = {}
        for insight in self.store.list(status=Status.VERIFIED):
            for task_id in insight.provenance.source_tasks:
                if task_id not in texts:
                    try:
                        texts[task_id] = self.store.get_task(task_id).text
                    except NotFoundError:
                        continue
                owners.setdefault(insight.id, []).append(task_id)
        order = list(texts)
        matrix = self.index.embedder.embed([texts[t] for t in order]) if order else np.zeros((0, 384))
        row = {t: i for i, t in enumerate(order)}
        vectors = {insight_id: matrix[[row[t] for t in ids]] for insight_id, ids in owners.items()}
        with self._lock:
            self._sources = (stamp, vectors)
        return vectors

    def retrieve(self, problem: str, *, llm: LLMClient, run_id: str,
                 exclude: Collection[str] = ()) -> list[dict[str, Any]]:
        """Insights that apply to the problem (possibly none), with evidence recorded; the ids in
        ``exclude`` are never offered (the learner's checks use it to leave insights out)."""
        key = (hashlib.sha256(problem.encode()).hexdigest(), self.store.version_stamp(), frozenset(exclude))
        if key in self._cache:
            chosen = self._cache[key]
            self._record(chosen, chosen, run_id)
            return chosen
        vector = self._embedding(problem)  # once, for the recall and the twin test
        found = [i for i in self.candidates(vector) if i.id not in exclude]
        quoted = [q for q in self.quoted(problem) if q not in exclude]
        found += [self.store.get(q) for q in quoted if q not in {i.id for i in found}]
        chosen_ids: set[str] = set(quoted) | (self.twinned(vector) & {i.id for i in found})
        if any(i.id not in chosen_ids for i in found) and self.settings.experimental.retrieval_check:
            listing = prompts.format_insights([insight_dict(i) for i in found if i.id not in chosen_ids])
            messages, sha = prompts.render("check_insights", problem=problem, candidates=listing)
            reply = llm.complete(messages, prompt_name="check_insights", prompt_sha=sha, max_tokens=40,
                                 context=CallContext(run_id=run_id, node="retrieve_insights"))
            chosen_ids |= set(_IDS.findall(reply.text))
        elif found:
            chosen_ids = {i.id for i in found}
        chosen = [insight_dict(i) for i in found if i.id in chosen_ids]
        self._cache[key] = chosen
        self._record([insight_dict(i) for i in found], chosen, run_id)
        return chosen

    def _record(self, found: list[dict[str, Any]], chosen: list[dict[str, Any]], run_id: str) -> None:
        chosen_ids = {c["id"] for c in chosen}
        with self.store.transaction():
            for insight in found:
                self.store.record_evidence(insight["id"], run_id=run_id, version=insight["version"],
                                           retrieved=True, used=insight["id"] in chosen_ids)

    def record_outcome(self, run_id: str, insights: list[dict[str, Any]], success: bool) -> None:
        """After a solve: the insights that went into the prompts, and whether the run succeeded."""
        with self.store.transaction():
            for insight in insights:
                self.store.record_evidence(insight["id"], run_id=run_id, version=insight["version"],
                                           retrieved=True, used=True, success=success)

