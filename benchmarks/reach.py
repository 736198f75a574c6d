"""Which benchmark items a library can reach at all: retrieval's recall, with no model call.

Run with: python -m benchmarks.reach --library starter --dataset test --out /tmp/reach

For each item, the library's candidates (vector recall and the source-problem gate, exactly as
``LibraryRetriever.candidates`` gives them to the applicability check, and the insights whose
quoted condition matches its text, ``LibraryRetriever.quoted``) are listed. An item with
no candidate gets the same prompts with the library as without it, so a with/without comparison
only has to solve the reached items: ``--out DIR`` writes them as ``DIR/<dataset>.jsonl`` (same
names, so a ``benchmarks.run --dataset DIR/<dataset>.jsonl`` run keeps the dataset's name).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from alphaopt.agent.retrieval import LibraryRetriever
from alphaopt.config import STARTER_LIBRARY, load_settings
from benchmarks import registry
from benchmarks.run import select_items


def reach(items: list[registry.Item], library: Path, home: Path) -> dict[str, list[str]]:
    """Item key → the ids of the insights recalled for it (items with none are left out)."""
    settings = load_settings(home=home, use_library=True, experimental={"starter_library": library})
    retriever = LibraryRetriever.open(settings)  # loads the export into the empty home
    try:
        found = {i.key: list(dict.fromkeys([*(c.id for c in retriever.candidates(i.description)),
                                            *retriever.quoted(i.description)])) for i in items}
    finally:
        retriever.close()
    return {key: ids for key, ids in found.items() if ids}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reach", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", action="append", required=True, help="as for benchmarks.run")
    parser.add_argument("--library", default="starter", help="'starter' or a path to a library JSONL export")
    parser.add_argument("--out", type=Path, help="write the reached items here, one JSONL file per dataset")
    args = parser.parse_args(argv)
    library = STARTER_LIBRARY if args.library == "starter" else Path(args.library)
    if not library.is_file():
        raise SystemExit(f"--library: no library file at {library}; give a JSONL export or 'starter'.")
    items = select_items(args.dataset)
    with tempfile.TemporaryDirectory() as home:
        reached = reach(items, Path(library), Path(home))
    print(f"{len(reached)} of {len(items)} items have a candidate insight from {library}")
    for key, ids in reached.items():
        print(f"  {key}: {', '.join(ids)}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        by_dataset: dict[str, list[str]] = {}
        for item in items:
            if item.key in reached:
                row = {"id": item.id, "description": item.description, "answer": item.answer}
                by_dataset.setdefault(item.dataset, []).append(json.dumps(row))
        for dataset, rows in by_dataset.items():
            (args.out / f"{dataset}.jsonl").write_text("\n".join(rows) + "\n")
        print(f"wrote {', '.join(str(args.out / f'{d}.jsonl') for d in by_dataset)}")


if __name__ == "__main__":
    main()
