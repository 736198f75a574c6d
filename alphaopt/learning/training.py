"""Training problems with known answers, read from JSONL files."""

from __future__ import annotations

import json
from itertools import zip_longest
from pathlib import Path

from alphaopt.errors import InputError


def read_training(paths: list[Path]) -> list[tuple[str, str, str, float]]:
    """Training items ``(dataset, id, text, answer)`` from JSONL files, interleaved file by file."""
    per_file = []
    for path in paths:
        rows = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                text = row.get("description") or row.get("problem") or row.get("text")
                rows.append((path.stem, str(row.get("id", number)), str(text), float(row["answer"])))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
                raise InputError(f"{path} line {number}: expected a problem text and a numeric 'answer' ({exc}).") from exc
        per_file.append(rows)
    return [item for group in zip_longest(*per_file) for item in group if item is not None]
