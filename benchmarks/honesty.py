"""Honesty checks: train/test near-duplicates and labels that look wrong.

Run with: python -m benchmarks.honesty
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from alphaopt.answers import ANSWER
from alphaopt.learning.dedup import TWIN_JACCARD, jaccard, shingles
from benchmarks import registry
from benchmarks.registry import Item, load, names


@dataclass(frozen=True)
class Twin:
    test: str
    train: str
    similarity: float


def find_twins(train: list[Item], test: list[Item], threshold: float = TWIN_JACCARD) -> list[Twin]:
    """Every (test, train) pair whose 5-gram Jaccard similarity reaches the threshold."""
    train_sets = [(t.key, shingles(t.description)) for t in train]
    twins = []
    for item in test:
        own = shingles(item.description)
        for key, other in train_sets:
            sim = jaccard(own, other)
            if sim >= threshold:
                twins.append(Twin(item.key, key, round(sim, 3)))
    return sorted(twins, key=lambda t: -t.similarity)


def suspect_labels(items: list[Item], train: list[Item] | None = None) -> dict[str, str]:
    """Items whose label looks wrong, with the reason. Labels are never edited, only flagged.

    Suspect: an answer of exactly 0.0, or a verbatim twin in ``train`` labelled differently.
    """
    found = {i.key: "answer is 0.0" for i in items if i.answer == 0.0}
    if train:
        answers = {t.key: t.answer for t in train}
        by_key = {i.key: i for i in items}
        for twin in find_twins(train, items, threshold=0.99):
            mine, theirs = by_key[twin.test].answer, answers[twin.train]
            if not ANSWER.correct(mine, theirs):
                reason = f"identical train item {twin.train} is labelled {theirs:g}"
                found[twin.test] = f"{found[twin.test]}; {reason}" if twin.test in found else reason
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threshold", type=float, default=TWIN_JACCARD)
    args = parser.parse_args()
    train = [i for n in names("train") for i in load(n)]
    test = [i for n in names("test") for i in load(n)]
    twins = find_twins(train, test, args.threshold)
    print(f"{len(twins)} train/test pairs with 5-gram Jaccard >= {args.threshold} "
          f"({len({t.test for t in twins})} test items affected)")
    for twin in twins:
        print(f"  {twin.test:28} {twin.train:28} {twin.similarity}")
    suspects = suspect_labels(test, train)
    print(f"{len(suspects)} test items with suspect labels:")
    for key, reason in sorted(suspects.items()):
        print(f"  {key:28} {reason}")


if __name__ == "__main__":
    main()


def honesty_flags(items: list[registry.Item]) -> tuple[set[str], dict[str, str]]:
    """The items with a twin across the train/test line (a test item's near-copy in a training
    split; for a training item, a test item it nearly copies), and the items with a suspect
    label (with the reason). A training item is not its own twin."""
    train_names = set(registry.names("train"))
    train = [i for n in train_names for i in registry.load(n)]
    test = [i for n in registry.names("test") for i in registry.load(n)]
    of_train = [i for i in items if i.dataset in train_names]
    of_test = [i for i in items if i.dataset not in train_names]
    twins = {t.test for t in find_twins(train, of_test)} | {t.test for t in find_twins(test, of_train)}
    return twins, suspect_labels(items, train)
