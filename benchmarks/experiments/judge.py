"""Judge one insight forced on training problems: right without it, with it, and with the placebo.

Run with: python -m benchmarks.experiments.judge I0121 --library library/starter.jsonl --limit 8

The problems are the bundled training items (``--dataset``, repeatable; all training splits by
default), less the insight's source problems and their near-copies, the items that nearly copy a
test item (``benchmarks.honesty``), and, of near-copies of each other, all but the first (the
splits copy each other's problems). ``--scope reached`` (the default) keeps those the library's
retrieval can recall the insight for (its recall candidates or a quote its condition matches, as
``benchmarks.reach`` finds them, with no model call); ``--scope unreached`` keeps the others, to
see whether the lesson would help beyond where it is recalled; ``--scope all`` keeps every one.
``--match REGEX`` keeps only the texts it finds (case-insensitive). Then a seeded sample of
``--limit`` of them (the same every run).

Each problem is solved as a user's greedy solve with exactly one lesson forced into the prompts,
told to the model: none, the insight, and, where the insight turned the answer right, the
placebo lesson (``prompts.PLACEBO``, as the learner's check) in its place. A turn that the
placebo makes too is not the insight's advice. Right means within the one answer tolerance
(``alphaopt.answers``). Rows go to ``benchmarks/results/<run>/judge.jsonl`` (resumable); the
solves' model calls are cached in ``benchmarks/results/<run>/home``. The summary (printed, and
in ``summary.md`` beside the rows) gives each arm's count, the problems turned right and wrong,
those right with the placebo too, and an exact McNemar p of with against without.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from alphaopt.agent import prompts
from alphaopt.agent.retrieval import LibraryRetriever, insight_dict
from alphaopt.answers import ANSWER
from alphaopt.api import solve
from alphaopt.config import STARTER_LIBRARY, load_settings
from alphaopt.learning.dedup import near_duplicates
from benchmarks import honesty, registry
from benchmarks.compare import mcnemar_p
from benchmarks.stored import recorded, results_file
from library.errors import NotFoundError

ARMS = ("without", "with", "placebo")


class Forced:
    """A library that gives every problem the same lessons (one arm)."""

    def __init__(self, lessons: list[dict[str, Any]]) -> None:
        self.lessons = lessons

    def retrieve(self, problem: str, **_: Any) -> list[dict[str, Any]]:
        return list(self.lessons)


def judged_items(insight_id: str, library: Path, datasets: list[str], scope: str, match: str | None,
                 limit: int | None, seed: int) -> tuple[dict[str, Any], list[registry.Item], int]:
    """The insight's lesson (told), the problems it is judged on, and how many there were before
    the sample."""
    train = [i for name in datasets for i in registry.load(name)]
    test = [i for name in registry.names("test") for i in registry.load(name)]
    test_twins = {t.train for t in honesty.find_twins(train, test)}
    with tempfile.TemporaryDirectory() as home:
        settings = load_settings(home=Path(home), use_library=True, experimental={"starter_library": library})
        retriever = LibraryRetriever.open(settings)
        try:
            try:
                insight = retriever.store.get(insight_id)
            except NotFoundError:
                raise SystemExit(f"{insight_id}: no such insight in {library} (see `alphaopt library list`).") from None
            sources = set(insight.provenance.source_tasks)
            source_texts = [t.text for t in retriever.store.answered_tasks(sorted(sources))] + [
                i.description for i in train if i.key in sources]
            pool = [i for i in train if i.key not in sources and i.key not in test_twins]
            copies = near_duplicates([i.description for i in pool], source_texts)
            pool = [i for n, i in enumerate(pool) if n not in copies]
            if match:
                pool = [i for i in pool if re.search(match, i.description, re.IGNORECASE)]
            if scope != "all":
                reached = {i.key for i in pool if insight_id in {c.id for c in retriever.candidates(i.description)}
                           or insight_id in retriever.quoted(i.description)}
                pool = [i for i in pool if (i.key in reached) == (scope == "reached")]
        finally:
            retriever.close()
    among = near_duplicates([i.description for i in pool], [], among=True)
    pool = [i for n, i in enumerate(pool) if n not in among]
    chosen = pool if limit is None or len(pool) <= limit else random.Random(seed).sample(pool, limit)
    lesson = {**insight_dict(insight), "told": True}
    return lesson, sorted(chosen, key=lambda i: i.key), len(pool)


def main(argv: list[str] | None = None, **clients: Any) -> int:
    """The command line; ``clients`` (``llm=``, ``runner=``) replace the solves' default ones."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.experiments.judge",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("insight", help="the insight's id, e.g. I0121")
    parser.add_argument("--library", default="starter", help="'starter' or a library JSONL export holding it")
    parser.add_argument("--dataset", action="append", help="a training split (repeatable; default: all of them)")
    parser.add_argument("--scope", choices=("reached", "unreached", "all"), default="reached",
                        help="the problems retrieval can recall it for (default), the others, or every one")
    parser.add_argument("--match", help="only the problems whose text this regular expression finds")
    parser.add_argument("--limit", type=int, help="a seeded sample of this many problems")
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--run", help="results folder name (default: judge-<insight>)")
    parser.add_argument("--out", type=Path, help="write the results here instead of benchmarks/results/<run>/")
    args = parser.parse_args(argv)
    library = STARTER_LIBRARY if args.library == "starter" else Path(args.library)
    if not library.is_file():
        raise SystemExit(f"--library: no library file at {library}; give a JSONL export or 'starter'.")
    datasets = args.dataset or registry.names("train")
    if unknown := [d for d in datasets if d not in registry.names("train") and not Path(d).is_file()]:
        raise SystemExit(f"--dataset: {unknown} are neither training splits ({registry.names('train')}) nor files.")
    lesson, items, pool = judged_items(args.insight, library, datasets, args.scope, args.match, args.limit, args.seed)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        out = args.out / "judge.jsonl"
    else:
        out, _ = results_file(args.run or f"judge-{args.insight}", "judge.jsonl", "insight")
    right = {(r["arm"], r["key"]): r["right"] for r in recorded(out) if r["insight"] == args.insight}
    placebo = {**prompts.PLACEBO, "stage": lesson["stage"], "told": True}
    given = {"without": [], "with": [lesson], "placebo": [placebo]}
    settings = load_settings(home=out.parent / "home")
    print(f"{args.insight}: {len(items)} of {pool} training problems ({args.scope}"
          f"{', ' + repr(args.match) if args.match else ''}): {[i.key for i in items]}", flush=True)
    for item in items:
        for arm in ARMS:
            gained = right.get(("with", item.key)) and not right.get(("without", item.key))
            if (arm, item.key) in right or (arm == "placebo" and not gained):
                continue
            start = time.monotonic()
            solution = solve(item.description, settings=settings, library=Forced(given[arm]), use_library=True,
                             **clients)
            right[(arm, item.key)] = ANSWER.correct(solution.objective, item.answer)
            row = {"insight": args.insight, "key": item.key, "arm": arm, "objective": solution.objective,
                   "answer": item.answer, "right": right[(arm, item.key)],
                   "seconds": round(time.monotonic() - start, 1)}
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"  {item.key} {arm}: {'right' if row['right'] else 'wrong'} ({solution.objective} against "
                  f"{item.answer}, {row['seconds']} s)", flush=True)
    line = summarize(args.insight, [i.key for i in items], recorded(out))
    print(line)
    command = "python -m benchmarks.experiments.judge " + " ".join(argv if argv is not None else sys.argv[1:])
    (out.parent / "summary.md").write_text(f"`{command}`\n\n{line}\n")
    return 0


def summarize(insight_id: str, keys: list[str], rows: list[dict[str, Any]]) -> str:
    """Each arm's count on the judged problems, the turns, and McNemar's p of with against without."""
    right: dict[str, dict[str, bool]] = {arm: {} for arm in ARMS}
    for r in rows:
        if r["insight"] == insight_id and r["key"] in keys:
            right[r["arm"]][r["key"]] = r["right"]
    both = [k for k in keys if k in right["with"] and k in right["without"]]
    gained = [k for k in both if right["with"][k] and not right["without"][k]]
    lost = [k for k in both if right["without"][k] and not right["with"][k]]
    placebo_too = [k for k in gained if right["placebo"].get(k)]
    return (f"{insight_id} on {len(both)} problems: without {sum(right['without'][k] for k in both)}, "
          f"with {sum(right['with'][k] for k in both)}; turned right {len(gained)} {gained}, of those right with the "
          f"placebo too {len(placebo_too)} {placebo_too}; turned wrong {len(lost)} {lost}; exact McNemar p "
          f"{mcnemar_p(len(gained), len(lost)):.3g}")


if __name__ == "__main__":
    raise SystemExit(main())
