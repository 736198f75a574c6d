"""``LibraryIndex``: a Chroma collection over each insight's current condition, for vector recall.

The only module that imports ``chromadb``. The SQL store stays the source of truth: the
collection can be dropped and rebuilt from it at any time (``rebuild``). Documents are the
conditions; metadata carries id, version, stage, labels and status so recall can filter.
Embeddings come from ``library.embeddings`` (offline), never from Chroma's default model.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar
from urllib.parse import urlsplit

import chromadb
import chromadb.errors
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.client import Client
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.config import Settings
from chromadb.utils.embedding_functions import register_embedding_function

from library.embeddings import DIMENSION, MODEL_ID, Embedder, default_embedder
from library.errors import LibraryError
from library.models import Insight, Status
from library.taxonomy import LabelKey, Stage, parse_stage

_T = TypeVar("_T")

_BATCH = 256
_STAMP_KEY = "library_stamp"
_EMBEDDER_KEY = "embedder"


class _Lazy:
    """The shared default embedder, loaded at its first use rather than at index construction."""

    model_id = MODEL_ID
    dimension = DIMENSION

    def embed(self, texts: Sequence[str]) -> Any:
        """Embed with the process-wide default embedder."""
        return default_embedder().embed(texts)


@register_embedding_function
class LibraryEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma's view of a :class:`library.embeddings.Embedder`, so Chroma never loads its default model."""

    def __init__(self, embedder: Embedder | None = None) -> None:
        self.embedder: Embedder = embedder or _Lazy()

    def __call__(self, input: Documents) -> Embeddings:
        """Embed documents (``input`` is Chroma's parameter name)."""
        return list(self.embedder.embed(list(input)))

    @staticmethod
    def name() -> str:
        """The name Chroma records in the collection's configuration."""
        return "alphaopt-library"

    def default_space(self) -> Space:
        """Cosine: the vectors are unit-norm sentence embeddings."""
        return "cosine"

    def get_config(self) -> dict[str, Any]:
        """What Chroma stores to rebuild this function."""
        return {"model_id": self.embedder.model_id}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> LibraryEmbeddingFunction:
        """Rebuild the default function; other embedders must be passed to ``LibraryIndex``."""
        if config.get("model_id") != _Lazy.model_id:
            raise LibraryError(f"the collection was embedded with {config.get('model_id')!r}; "
                               "open it with LibraryIndex(..., embedder=<that embedder>) or rebuild it")
        return LibraryEmbeddingFunction()


class Recalled(NamedTuple):
    """One recall hit: the insight id and its cosine distance to the query (0 is identical)."""

    insight_id: str
    distance: float


class InsightSource(Protocol):
    """What ``rebuild``/``sync`` need from a store (``LibraryStore`` fits)."""

    def list(self, *, status: Any = None) -> list[Insight]:
        """Current versions of all insights."""
        ...

    def version_stamp(self) -> str:
        """A token that changes with every insight change."""
        ...


def _client(location: str | Path) -> tuple[ClientAPI, bool]:
    settings = Settings(anonymized_telemetry=False)
    text = str(location)
    if text.startswith(("http://", "https://")):
        parts = urlsplit(text)
        ssl = parts.scheme == "https"
        client = chromadb.HttpClient(host=parts.hostname or "localhost", port=parts.port or (443 if ssl else 8000),
                                     ssl=ssl, settings=settings)
        return client, False
    if text == ":memory:":
        return chromadb.EphemeralClient(settings=settings), True
    Path(text).mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=text, settings=settings), False


def _metadata(insight: Insight) -> dict[str, str | int]:
    return {"insight_id": insight.id, "version": insight.version, "stage": insight.stage.value,
            "level1": insight.level1, "level2": insight.level2, "label": insight.label.path,
            "status": insight.status.value}


def _upserting(part: list[Insight]) -> Callable[[Any], None]:
    """The Chroma call that indexes ``part`` (bound here, not to a loop variable)."""
    return lambda c: c.upsert(ids=[i.id for i in part], documents=[i.condition for i in part],
                              metadatas=[_metadata(i) for i in part])


def _label_path(label: LabelKey | tuple[str, str, str] | str) -> str:
    if isinstance(label, str):
        parts = label.split("/")
        if len(parts) != 3:
            raise LibraryError(f"label {label!r} must be 'stage/level1/level2'")
        label = (parts[0], parts[1], parts[2])
    return LabelKey.of(*label).path


class LibraryIndex:
    """Vector recall over insight conditions.

    Args:
        location: A directory (embedded ``PersistentClient``), an ``http(s)://host:port`` URL
            (a Chroma server), or ``":memory:"`` (a private in-process collection, for tests).
        embedder: Any :class:`library.embeddings.Embedder`; the offline MiniLM model by default.
        collection: The collection name.

    A collection embedded by a different model is emptied on open; ``sync`` or ``rebuild``
    then refills it.
    """

    def __init__(self, location: str | Path, *, embedder: Embedder | None = None,
                 collection: str = "insights") -> None:
        self._client, private = _client(location)
        self._name = f"{collection}-{uuid.uuid4().hex[:12]}" if private else collection
        self._ef = LibraryEmbeddingFunction(embedder)
        self._collection = self._open()
        if (self._collection.metadata or {}).get(_EMBEDDER_KEY) != self._ef.embedder.model_id:
            self._collection = self._recreate()

    def _open(self) -> Any:
        return self._client.get_or_create_collection(
            self._name, embedding_function=self._ef,  # type: ignore[arg-type]  # Chroma's own docs use this type
            configuration={"hnsw": {"space": "cosine"}},
            metadata={_EMBEDDER_KEY: self._ef.embedder.model_id},
        )

    def _recreate(self) -> Any:
        try:
            self._client.delete_collection(self._name)
        except chromadb.errors.NotFoundError:  # another process deleted it first
            pass
        return self._open()

    def _live(self, op: Callable[[Any], _T]) -> _T:
        """Run ``op`` on the collection. Another process sharing the index (a ``library`` command
        while ``learn`` runs) may have rebuilt it, which deletes and re-creates the collection:
        then open the new one and run ``op`` again."""
        try:
            return op(self._collection)
        except chromadb.errors.NotFoundError:
            self._collection = self._open()
            return op(self._collection)

    def close(self) -> None:
        """Release the Chroma client."""
        if isinstance(self._client, Client):
            self._client.close()

    def __enter__(self) -> LibraryIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def embedder(self) -> Embedder:
        """The embedder behind the collection (also used to match taxonomy labels)."""
        return self._ef.embedder

    def count(self) -> int:
        """How many insights the collection holds."""
        return int(self._live(lambda c: c.count()))

    @property
    def stamp(self) -> str | None:
        """The store's ``version_stamp()`` at the last ``rebuild``, if any."""
        value = (self._live(lambda c: c.metadata) or {}).get(_STAMP_KEY)
        return str(value) if value is not None else None

    def upsert(self, insights: Insight | Iterable[Insight]) -> None:
        """Index (or re-index) insights by their current condition."""
        batch = [insights] if isinstance(insights, Insight) else list(insights)
        for start in range(0, len(batch), _BATCH):
            self._live(_upserting(batch[start : start + _BATCH]))

    def remove(self, insight_id: str) -> None:
        """Drop an insight from the index (a no-op when it is not there)."""
        self._live(lambda c: c.delete(ids=[insight_id]))

    def rebuild(self, store: InsightSource) -> int:
        """Replace the collection's contents with every insight in ``store``; return the count."""
        stamp = store.version_stamp()
        insights = store.list()
        self._collection = self._recreate()
        self.upsert(insights)
        # another process rebuilding from the same store may have re-created the collection meanwhile
        metadata = {_EMBEDDER_KEY: self._ef.embedder.model_id, _STAMP_KEY: stamp}
        self._live(lambda c: c.modify(metadata=metadata))
        return len(insights)

    def sync(self, store: InsightSource) -> bool:
        """Rebuild when the store changed since the last rebuild; return whether it rebuilt."""
        if self.stamp == store.version_stamp():
            return False
        self.rebuild(store)
        return True

    def recall(self, text: str | Sequence[float] | np.ndarray, *, k: int = 8, stage: Stage | str | None = None,
               labels: Iterable[LabelKey | tuple[str, str, str] | str] | None = None,
               status: Status | str | Iterable[Status | str] | None = (Status.VERIFIED,)) -> list[Recalled]:
        """The ``k`` insights whose conditions are nearest to ``text``.

        Args:
            text: The problem (or the part of it) to match conditions against, or its embedding
                (from ``self.embedder``) when the caller has it already.
            k: How many to return at most.
            stage: Only insights at this stage.
            labels: Only insights with one of these labels (``LabelKey``, a 3-tuple or
                ``"stage/level1/level2"``).
            status: Allowed statuses (verified only by default; ``None`` for any).

        Returns:
            Hits nearest first, as ``(insight_id, cosine distance)``.
        """
        where: list[dict[str, Any]] = []
        if stage is not None:
            where.append({"stage": parse_stage(stage).value})
        if labels is not None:
            paths = [_label_path(label) for label in labels]
            if not paths:
                return []
            where.append({"label": {"$in": paths}})
        if status is not None:
            values = [status] if isinstance(status, str) else list(status)
            where.append({"status": {"$in": [Status(v).value for v in values]}})
        count = self.count()
        if count == 0 or k <= 0:
            return []
        clause = None if not where else where[0] if len(where) == 1 else {"$and": where}
        query: dict[str, Any] = ({"query_texts": [text]} if isinstance(text, str)
                                 else {"query_embeddings": [[float(x) for x in text]]})
        result = self._live(lambda c: c.query(**query, n_results=min(k, count), where=clause,
                                              include=["distances"]))
        ids, distances = result["ids"][0], (result["distances"] or [[]])[0]
        return [Recalled(i, float(d)) for i, d in zip(ids, distances, strict=True)]
