"""JSONL batches with resume: one result line per problem, written as each finishes.

Input lines are JSON objects with the problem under ``problem``, ``description`` or ``text``
and an optional ``id`` (default: the line number). Only the text reaches the solver; other
fields (an ``answer``, say) never do. Rerunning with the same output skips the ids already
solved there and retries the ones recorded as failures.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from alphaopt.api import solve_batch
from alphaopt.config import Settings
from alphaopt.errors import AlphaoptError, InputError
from alphaopt.agent.state import BatchItem, Solution

TEXT_FIELDS = ("problem", "description", "text")


def parse_problems(lines: list[str], source: str) -> list[BatchItem]:
    """Parse JSONL problem lines.

    Raises:
        InputError: a line is not a JSON object with a problem text, or ids repeat.
    """
    items: list[BatchItem] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{source} line {number} is not valid JSON ({exc.msg}): fix or remove that line.") from exc
        text = next((record[f] for f in TEXT_FIELDS if isinstance(record, dict) and isinstance(record.get(f), str)), None)
        if text is None:
            raise InputError(f"{source} line {number} has no problem text: give it a 'problem' (or 'description') string.")
        item_id = str(record.get("id", number))
        if item_id in seen:
            raise InputError(f"{source} line {number} repeats id {item_id!r}: ids must be unique for resume to work.")
        seen.add(item_id)
        items.append(BatchItem(id=item_id, problem=text))
    return items


def load_done(output: Path) -> tuple[set[str], list[str]]:
    """Ids already solved in ``output`` and the lines to keep (failures are dropped for retry)."""
    if not output.exists():
        return set(), []
    done, keep = set(), []
    for line in output.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash: that item is solved again
        if isinstance(record, dict) and "id" in record and not record.get("failure"):
            done.add(str(record["id"]))
            keep.append(line)
    return done, keep


def result_line(item: BatchItem, outcome: Solution | AlphaoptError) -> dict[str, Any]:
    """The output record for one item."""
    if isinstance(outcome, Solution):
        return {"id": item.id, **outcome.model_dump(mode="json")}
    return {"id": item.id, "failure": True, "error": f"{type(outcome).__name__}: {outcome}"}


@dataclass
class BatchSummary:
    """Counts for the end-of-batch message."""

    total: int
    skipped: int
    solved: int
    failed: int
    optimal: int


def run_batch(
    lines: list[str],
    source: str,
    output: Path,
    settings: Settings,
    *,
    concurrency: int = 1,
    on_progress: Callable[[BatchItem, dict[str, Any]], None] | None = None,
    **clients: Any,
) -> BatchSummary:
    """Solve every problem not yet in ``output``, appending one line per result."""
    items = parse_problems(lines, source)
    done, keep = load_done(output)
    todo = [i for i in items if i.id not in done]
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(output.suffix + ".tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, output)
    counts = {"solved": 0, "failed": 0, "optimal": 0}
    lock = threading.Lock()

    with output.open("a") as sink:
        def record(item: BatchItem, outcome: Solution | AlphaoptError) -> None:
            line = result_line(item, outcome)
            with lock:
                _write(sink, line)
                counts["failed" if line.get("failure") else "solved"] += 1
                counts["optimal"] += int(line.get("status") == "optimal")
            if on_progress:
                on_progress(item, line)

        if todo:
            solve_batch(todo, concurrency=concurrency, settings=settings, on_result=record, **clients)
    return BatchSummary(total=len(items), skipped=len(items) - len(todo), **counts)


def _write(sink: IO[str], record: dict[str, Any]) -> None:
    sink.write(json.dumps(record) + "\n")
    sink.flush()
