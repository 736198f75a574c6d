"""The offline embedder: all-MiniLM-L6-v2 int8 ONNX + the model's own tokenizer, no network."""

from __future__ import annotations

import base64
import gzip
import hashlib
from importlib import resources

import numpy as np
import pytest

from library.embeddings import DIMENSION, MAX_TOKENS, MiniLMEmbedder, default_embedder, load_tokenizer, model_path

# Two sentences embedded once by the full-precision model (sentence-transformers 6.2.0, PyTorch,
# from the safetensors weights of the same checkpoint), stored as float16.
REFERENCE_SENTENCES = [
    "If items can only be produced in whole units, declare the decision variables as integers.",
    "A minimum share of the total becomes the linear constraint x_i >= p * sum(x).",
]
REFERENCE_FP16_B64 = (
    "lieBLJKuZxzJpoqe5iz9qPymJSx4KESuLS4bpLWnJyBgoj0oVK58qQotKpx2nZclEih0KHIopqSlKg6pgqrJKq4vQKsMLL2jFKiO"
    "I5ypAyr/KBKpQQjjowqoXykMqG+ld6jjK1Eoki04rVCkwCbkp6OjCB8kqgGu6qyRo1Ck960uKHEbPKs3KMCo8ihhK4siLSB4Kgwt"
    "5qAnLhuv5yZeKbCvIiVUrA6s0C2vHp0mNS3rLOShNqyIJvgsRKd3Kr4mU6rWqAKnzhjfqR6bUo87KQasIq4sLHGow5rNqfAr8KeI"
    "ohkpSifeqZkkjJdTqlmsfyfWKfKn+youqvwoQC4AgAmwo6saKzSlE6CbKVKj1CJVLtYrF6bfKeks8ClYLjOjVSvSLccria1fpR6r"
    "iqgTpU0oFaqEp4GmMaoZoEgkMioLpN4khiV3KMCsNy0cn3elg6Z3qpskAS1Kqr0pkyhEl6+kmqWppmUl9yAiq8ObA6S8JN4sNymh"
    "koGttCz5KcMqNqV0KrShZ61NLFmrSqneoxEs+Z81KV+q1y+aokOgHq17rfEob6T1qgsrGqC2qEYjKKwuH9+rfCfXATOlyoUAgOGo"
    "Ii9iGA2jBajHJRGlPKtHI70ed6iklYmq3agGpq0r+6zmn2IsyZsCpEwo/KalJE6pQijxoUepxylxCSSoSa5cq4Sk76ZUsFItH649"
    "pAUtCabfqLGqOjCPJXeunC94qfOeHaZpKgeYlK4OJkCm7C42Ip+cPS5Qoqapt6QRLnIlC6fsoSAqkS7XH0QmlCu8Lacs3qkhruyr"
    "caLNKIgsMy3GJZgp3yWlKXCjAqtDMMsozB+/JO6htiTwKSQsH6oAgDettawnpGgkgyJ5FrqrVahfIFgjeyl7q6ypTyZNLUSqAyK5"
    "G0CqAKLyKxOkWCpfIsUoJasSrECmKSl9KWcrmySoKXUuJSeBrMobUZ45Je+qn63YrLqsFyi2p20e56lAq1qpYCaTo5+glSs8qAgr"
    "kqqWpnyqxahkpLsaAqjRqZ+maKECKOclL6KnIg4l/Cn/o3Ui1Sprp/mWkS3cIJWquiupJKckQCldKhyjOaxxqTaQiihAnpGgFimI"
    "LhwoKaTYFB4u3JebKGwoDbB2qFQmKCmTKH0mpaSdKIapICvtpmqp/CdVrIoiBi3apWOYMqx3rasl+6pdqJKmoiFcpPcpFSgILRqW"
    "/ScsLI+ouyl3p9gnTKgDoFuULqgTMMypbqmmK5oUEyxUpYCp+pujrpQnHa1kLAyjIawbKcussS0/pOurpCR7HwgfAixkqD+pUi6G"
    "q6ikJqhZmzOr86sCoLcm/61MKAMnbKXfKkAqkiknKUuw8pluqRYpnCq2qGunkKYAAHqqea34JLutlKRAJ7MoCKN+qTOgSClMrVWg"
    "ciD8LY+q2KRiLjgoDKyops+t/iBHpaehj6mfImGt8aozqL2lZylVLFmqEym3K3woJSUpnNgim6WZoFod269SrAOmNZcpL/esVJyU"
    "qYSph6nOLLyh2auvrV2rs5vvH3qnCqqWLDwqaCjmKwcfLaQ8MHcreLDxJJwha6HyLRQk0yvtKxOmbyi1rMwq2iz7ISeqlyNDKWks"
    "gqaEGi8hnaympeEuaykAgN2hVStkJympLSePqDot2a2vqdQwNaLgqTOgxx5RIl4pkak7LeMp2gLkmRsvPClBJVEp6CGfqdEpDaxu"
    "oVif5aWrrmmmdR0CquSpMyTFolQo6itSqJkqDyBXK+8jAyyosDCjxiTHJDkkqSjcIJilDCXZriss/y0FrzWooqo3rrwtHB78qSec"
    "JK0WJAGe8ylCLSYsjixwJBEtcSgSIIGRK6U7pIggKC7zo8Cs6KbmIwInLaXdAyStJhiPKnWtgxQAgNOp061BqjCl2i4SrKAq/5wN"
    "qjElqSXxqA0qsyVtrT0qLq+QmLYgVazhqqypSaISHd+gDp2ELNQrgC6ZpZMqZKSKJwAluiAiLGQfFqCMqviof6xMKPsm2wJ0Kg0p"
    "Xa22puCoxK04LM4gcSmaq0okyCUcp0yikqjJrD2pZpjCKCyc"
)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return default_embedder()


def test_vectors_are_384_dimensional_unit_norm_and_deterministic(embedder):
    texts = ["Maximise profit from chairs and tables.", "", "Minimise cost subject to demand."]
    a, b = embedder.embed(texts), embedder.embed(texts)
    assert a.shape == (3, DIMENSION) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(a, b)
    one = embedder.embed(texts[2:])  # batch composition and padding do not change a vector
    np.testing.assert_allclose(one[0], a[2], atol=1e-5)
    assert embedder.embed([]).shape == (0, DIMENSION)


def test_close_to_the_full_precision_model(embedder):
    reference = np.frombuffer(base64.b64decode(REFERENCE_FP16_B64), dtype=np.float16).reshape(2, DIMENSION)
    reference = reference.astype(np.float32) / np.linalg.norm(reference.astype(np.float32), axis=1, keepdims=True)
    cosines = (embedder.embed(REFERENCE_SENTENCES) * reference).sum(axis=1)
    assert cosines.min() >= 0.999, cosines


def test_paraphrases_score_higher_than_unrelated_sentences(embedder):
    query, paraphrase, unrelated = embedder.embed([
        "The number of trucks purchased must be a whole number.",
        "Vehicles can only be bought in integer quantities.",
        "The museum opens at nine on Sunday mornings.",
    ])
    assert query @ paraphrase > query @ unrelated + 0.3


def test_long_texts_are_truncated_at_256_tokens(embedder):
    tokenizer = load_tokenizer()
    long_text = " ".join(["capacity"] * 200 + ["demand"] * 200)
    assert len(tokenizer.encode(long_text).ids) == MAX_TOKENS
    prefix = " ".join(["capacity"] * 200 + ["demand"] * (MAX_TOKENS - 2 - 200))
    full, cut = embedder.embed([long_text, prefix])
    np.testing.assert_allclose(full, cut, atol=1e-5)


def test_model_and_tokenizer_files_are_the_pinned_ones():
    raw = resources.files("library").joinpath("data", "all-MiniLM-L6-v2.tokenizer.json.gz").read_bytes()
    assert hashlib.sha256(gzip.decompress(raw)).hexdigest() == (
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037")
    assert model_path().name == "model.onnx" and model_path().stat().st_size == 22_928_619
    assert load_tokenizer().encode("Flow conservation!").tokens == ["[CLS]", "flow", "conservation", "!", "[SEP]"]


def test_chroma_embedding_function_wraps_the_embedder(embedder):
    from library.index import LibraryEmbeddingFunction

    function = LibraryEmbeddingFunction(embedder)
    vectors = function(["Flow into a node equals flow out of it."])
    assert len(vectors) == 1 and len(vectors[0]) == DIMENSION
    assert LibraryEmbeddingFunction.name() == "alphaopt-library" and function.default_space() == "cosine"
    assert function.get_config() == {"model_id": "all-MiniLM-L6-v2-onnx-int8"}
