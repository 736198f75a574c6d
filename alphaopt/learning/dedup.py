"""Near-duplicate problem texts: word 5-gram shingles and their Jaccard similarity.

Used by ``alphaopt learn --exclude`` (never learn from a problem you evaluate on), by ``alphaopt
learn`` to learn once from training problems that copy each other (the training splits hold
about a hundred such twins, mostly NL4Opt and NLP4LP), and by the benchmarks' honesty checks
(train/test twins).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SHINGLE = 5
TWIN_JACCARD = 0.5


def shingles(text: str, n: int = SHINGLE) -> frozenset[str]:
    """Word n-grams of the lower-cased text, numbers kept (they make problems differ)."""
    words = re.findall(r"[a-z]+|\d+(?:\.\d+)?", text.lower())
    return frozenset(" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1)))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def near_duplicates(texts: Iterable[str], reference: Iterable[str], threshold: float = TWIN_JACCARD, *,
                    among: bool = False) -> set[int]:
    """Indexes of ``texts`` whose shingle similarity to some reference text reaches ``threshold``;
    with ``among``, also those that nearly copy an earlier text of ``texts`` that is itself kept
    (of a set of twins, the first is kept)."""
    refs = [shingles(r) for r in reference]
    found = set()
    for n, text in enumerate(texts):
        own = shingles(text)
        if any(jaccard(own, r) >= threshold for r in refs):
            found.add(n)
        elif among:
            refs.append(own)
    return found
