"""A private copy of the library on which evolution tries changes through the real recall path.

The copy holds the verified insights (with their versions and source problems) and the
taxonomy labels with their definitions, in an in-memory SQLite store and an in-memory Chroma
collection embedded by the same embedder. Retrieval on it is the agent's own
``LibraryRetriever`` with the same settings: labels, vector recall, the source gate and the
applicability check. Trying a candidate condition or label there leaves the library itself
untouched, so a run stopped halfway never leaves a trial behind; only the change evolution
keeps is written to the library, as a new version.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from alphaopt.agent.retrieval import LibraryRetriever
from alphaopt.config import Settings
from alphaopt.llm.client import LLMClient
from library import Insight, LabelKey, LibraryIndex, LibraryStore, Task


class Scratch:
    """An in-memory copy of a library, and retrieval over it."""

    def __init__(self, settings: Settings, store: LibraryStore, index: LibraryIndex) -> None:
        exported = io.StringIO()
        store.export_jsonl(exported, header={"scratch": True})
        self.store = LibraryStore(":memory:", actor="evolution scratch copy")
        self.store.import_jsonl(io.StringIO(exported.getvalue()))
        active = {label.key: label for label in store.labels()}
        for key, label in active.items():
            mine = self.store.ensure_label(key.stage, key.level1, key.level2, label.display, label.definition)
            if label.definition.strip() and (mine.definition, mine.display) != (label.definition, label.display):
                self.store.define_label(key, label.definition, display=label.display)
        for label in self.store.labels():
            if label.key not in active and not self.store.list(label=label.key, status="verified"):
                self.store.retire_label(label.key)
        self.index = LibraryIndex(":memory:", embedder=index.embedder)
        self.index.rebuild(self.store)
        self.retriever = LibraryRetriever(settings, self.store, self.index)

    def close(self) -> None:
        """Drop the copy."""
        self.retriever.close()

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def change(self, insight_id: str, *, sources: Sequence[Task] = (), **changes: Any) -> Insight:
        """Give the copy's insight ``changes`` (condition, label, source tasks) and re-index it;
        ``sources`` are the texts of source tasks the copy may not hold yet."""
        for task in sources:
            self.store.add_task(task.dataset, task.item_id, task.text)
        insight = self.store.revise(insight_id, reason="trial", **changes)
        self.index.upsert([insight])
        return insight

    def chooses(self, insight_id: str, task: Task, llm: LLMClient, run_id: str) -> bool:
        """Whether retrieval on the copy chooses the insight for the problem."""
        return any(i["id"] == insight_id for i in self.retriever.retrieve(task.text, llm=llm, run_id=run_id))

    def add_label(self, key: LabelKey, display: str, definition: str) -> None:
        """A new label (with its definition) in the copy."""
        self.store.ensure_label(key.stage, key.level1, key.level2, display, definition)
        self.store.define_label(key, definition, display=display)

    def labels_for(self, task: Task, n: int) -> list[tuple[str, str, str]]:
        """The ``n`` labels retrieval on the copy searches for the problem."""
        return self.retriever.labels_for(task.text, n)
