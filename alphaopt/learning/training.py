"""Training problems with known answers, read from JSONL files."""

from __future__ import annotations

from itertools import zip_longest
from pathlib import Path

from alphaopt.errors import InputError
from alphaopt.jsonl import check_text, read_jsonl


def read_training(paths: list[Path]) -> list[tuple[str, str, str, float]]:
    """Training items ``(dataset, id, text, answer)`` from JSONL files, interleaved file by file.

    Raises:
        InputError: a file is not UTF-8 JSONL, or a line lacks a problem text or a numeric
            ``answer``; the message names the file and line.
    """
    per_file = []
    for path in paths:
        rows = []
        for record in read_jsonl(path):
            where = f"{path} line {record.number}"
            try:
                row = record.value
                text = row.get("description") or row.get("problem") or row.get("text")
                rows.append((path.stem, str(row.get("id", record.number)), str(text), float(row["answer"])))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise InputError(f"{where}: expected a problem text and a numeric 'answer' ({exc}).") from exc
            check_text(rows[-1][2], f"The problem text on {where}")
        per_file.append(rows)
    return [item for group in zip_longest(*per_file) for item in group if item is not None]
