"""Benchmark datasets: one loader for the JSONL format, a registry of the bundled files.

Each line is ``{"id": str, "description": str, "answer": float}``. Any file in that format can
be passed by path; the bundled ones (copied from the project's shared datasets, see
``data/SOURCES.md``) are known by name, e.g. ``nl4opt_test``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alphaopt.errors import InputError
from alphaopt.jsonl import read_jsonl

DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class Item:
    """One benchmark problem. ``answer`` is for scoring only and never reaches the solver."""

    dataset: str
    id: str
    description: str
    answer: float

    @property
    def key(self) -> str:
        """Unique across datasets."""
        return f"{self.dataset}/{self.id}"


def names(split: str | None = None) -> list[str]:
    """The bundled dataset names, optionally only one split (``train`` or ``test``)."""
    found = sorted(p.stem for p in DATA.glob("*.jsonl"))
    return [n for n in found if split is None or n.endswith("_" + split)]


def resolve(name_or_path: str) -> Path:
    """A bundled dataset name, or a path to a JSONL file in the same format."""
    path = Path(name_or_path)
    if path.suffix == ".jsonl" and path.is_file():
        return path
    bundled = DATA / f"{name_or_path}.jsonl"
    if bundled.is_file():
        return bundled
    raise SystemExit(f"Unknown dataset {name_or_path!r}: use one of {', '.join(names())} or a path to a .jsonl file.")


def load(name_or_path: str) -> list[Item]:
    """Load a dataset; a file that is not UTF-8 JSONL, or a malformed line, stops with its line number."""
    path = resolve(name_or_path)
    try:
        records = read_jsonl(path)
    except InputError as exc:
        raise SystemExit(str(exc)) from exc
    items = []
    for record in records:
        try:
            row = record.value
            items.append(Item(path.stem, str(row["id"]), str(row["description"]), float(row["answer"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise SystemExit(f"{path} line {record.number}: expected id, description, answer ({exc}).") from exc
    return items
