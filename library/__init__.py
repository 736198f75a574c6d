"""The experience library: insights with provenance and versions, their index and retrieval.

A leaf package: it never imports ``alphaopt`` (nor ``solvers``) and makes no LLM calls.

- :class:`LibraryStore` (``library.store``): the SQL source of truth (SQLite or PostgreSQL), with
  one-transaction learning steps (``verify``, ``retire``, ``merge``), library versions and
  ``rollback``, and leased task claims plus a merge lock for several workers.
- :class:`LibraryIndex` (``library.index``): Chroma vector recall over insight conditions.
- :class:`MiniLMEmbedder` (``library.embeddings``): offline all-MiniLM-L6-v2 sentence embeddings.

``LibraryIndex`` and the embedder are imported on first use, so ``import library`` stays light
(Chroma and onnxruntime take a second or two to import).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from library.errors import (
    ConflictError,
    EmbeddingModelError,
    ImportLineError,
    InvalidInsightError,
    LibraryError,
    LockTimeoutError,
    NotFoundError,
)
from library.jsonl import read_header
from library.models import (
    Attempt,
    AttemptKind,
    Claim,
    ClaimStatus,
    Evidence,
    Insight,
    InsightChanges,
    InsightDraft,
    Label,
    LearningRun,
    LibraryVersion,
    Provenance,
    RunStatus,
    Status,
    Task,
)
from library.records import task_id_for
from library.store import LibraryStore
from library.taxonomy import SEED_LABELS, LabelKey, Stage, canonical

if TYPE_CHECKING:
    from library.embeddings import Embedder, MiniLMEmbedder, default_embedder
    from library.index import LibraryIndex, Recalled

_LAZY = {
    "Embedder": "library.embeddings",
    "MiniLMEmbedder": "library.embeddings",
    "default_embedder": "library.embeddings",
    "LibraryIndex": "library.index",
    "Recalled": "library.index",
}

__all__ = [
    "SEED_LABELS",
    "Attempt",
    "AttemptKind",
    "Claim",
    "ClaimStatus",
    "ConflictError",
    "Embedder",
    "EmbeddingModelError",
    "Evidence",
    "ImportLineError",
    "Insight",
    "InsightChanges",
    "InsightDraft",
    "InvalidInsightError",
    "Label",
    "LabelKey",
    "LearningRun",
    "LibraryError",
    "LibraryIndex",
    "LibraryStore",
    "LibraryVersion",
    "LockTimeoutError",
    "MiniLMEmbedder",
    "NotFoundError",
    "Provenance",
    "Recalled",
    "RunStatus",
    "Stage",
    "Status",
    "Task",
    "canonical",
    "default_embedder",
    "read_header",
    "task_id_for",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'library' has no attribute {name!r}")
