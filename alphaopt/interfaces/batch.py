"""JSONL batches with resume: one result line per problem, written as each finishes.

Input lines are JSON objects with the problem under ``problem``, ``description`` or ``text``
and an optional ``id`` (default: the line number). Only the text reaches the solver; other
fields (an ``answer``, say) never do.

One item never sinks a batch: a line without a usable problem text, text that is not valid
Unicode, an endpoint fault, a solver crash or any other error in one item becomes that item's
failure line (``"failure": true`` and ``"error": "<type>: <message>"``) and the others go on.
Rerunning with the same output keeps each id's first line that is not a failure, drops failure
lines and lines cut short by a crash, and solves the missing ids again, so no id is lost or
written twice.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from alphaopt.agent.state import BatchItem, Solution
from alphaopt.api import ANSWER_STATUSES, solve_batch
from alphaopt.config import Settings
from alphaopt.errors import InputError
from alphaopt.jsonl import Record

TEXT_FIELDS = ("problem", "description", "text")


@dataclass(frozen=True)
class Entry:
    """One input line: the item, or why it cannot be solved (recorded as its failure)."""

    item: BatchItem
    error: InputError | None = None


def parse_problems(records: list[Record], source: str) -> list[Entry]:
    """The batch items of JSONL records; a line without a problem text is an entry with an error.

    Raises:
        InputError: ids repeat (resume could not tell the items apart).
    """
    entries: list[Entry] = []
    seen: set[str] = set()
    for record in records:
        value = record.value
        fields = value if isinstance(value, dict) else {}
        item_id = str(fields.get("id", record.number))
        if item_id in seen:
            raise InputError(f"{source} line {record.number} repeats id {item_id!r}: "
                             "ids must be unique for resume to work.")
        seen.add(item_id)
        text = next((fields[f] for f in TEXT_FIELDS if isinstance(fields.get(f), str)), None)
        if text is None:
            error = InputError(f"{source} line {record.number} has no problem text: give it a 'problem' "
                               "(or 'description') string.")
            entries.append(Entry(BatchItem(id=item_id, problem=""), error))
        else:
            entries.append(Entry(BatchItem(id=item_id, problem=text)))
    return entries


def load_done(output: Path) -> dict[str, dict[str, Any]]:
    """The lines of ``output`` to keep, by id: each id's first line that is not a failure.

    Failure lines (retried), lines that are not JSON objects with an id (cut short by a crash)
    and later lines for an id already kept are dropped.
    """
    done: dict[str, dict[str, Any]] = {}
    if not output.exists():
        return done
    for line in output.read_bytes().decode("utf-8", "replace").split("\n"):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "id" in record and not record.get("failure"):
            done.setdefault(str(record["id"]), record)
    return done


def result_line(item: BatchItem, outcome: Solution | BaseException) -> dict[str, Any]:
    """The output record for one item: its solution, or its failure with the error's type and message."""
    if isinstance(outcome, Solution):
        return {"id": item.id, **outcome.model_dump(mode="json")}
    return {"id": item.id, "failure": True, "error": f"{type(outcome).__name__}: {outcome}"}


@dataclass
class BatchSummary:
    """Counts for the end-of-batch message: ``skipped`` items were in the output already; the
    others were solved in this run and ended ``answered`` (``optimal`` of them), without an
    answer, or ``failed``. ``unanswered`` counts every item of the input whose line in the output
    has no answer, this run's and the kept ones."""

    total: int
    skipped: int
    answered: int
    optimal: int
    failed: int
    unanswered: int


def run_batch(
    records: list[Record],
    source: str,
    output: Path,
    settings: Settings,
    *,
    concurrency: int = 1,
    on_progress: Callable[[BatchItem, dict[str, Any]], None] | None = None,
    cluster: str | None = None,
    **clients: Any,
) -> BatchSummary:
    """Solve every problem not yet in ``output``, appending one line per result as it finishes.

    ``output`` is left as it is until the first result is ready (a run that cannot start, say
    the endpoint setting is wrong, changes nothing); then the kept lines are rewritten (to a
    temporary file, renamed over ``output``) and each result is appended and flushed, so a
    crash at any moment leaves every finished line in place.

    Raises:
        InputError: ids repeat in the input.
    """
    entries = parse_problems(records, source)
    done = load_done(output)
    todo = [e for e in entries if e.item.id not in done]
    ids = {e.item.id for e in entries}
    counts = {"answered": 0, "optimal": 0, "failed": 0,
              "unanswered": sum(1 for i, r in done.items() if i in ids and r.get("status") not in ANSWER_STATUSES)}
    lock = threading.Lock()

    with _Output(output, [json.dumps(kept) for kept in done.values()]) as sink:
        def record(item: BatchItem, outcome: Solution | BaseException) -> None:
            line = result_line(item, outcome)
            with lock:
                try:
                    text = json.dumps(line)
                except (TypeError, ValueError) as exc:  # recorded as the item's failure instead
                    line = result_line(item, exc)
                    text = json.dumps(line)
                sink.write(text)
                if line.get("failure"):
                    counts["failed"] += 1
                elif line["status"] in ANSWER_STATUSES:
                    counts["answered"] += 1
                    counts["optimal"] += int(line["status"] == "optimal")
                else:
                    counts["unanswered"] += 1
            if on_progress:
                on_progress(item, line)

        solvable = [e.item for e in todo if e.error is None]
        if solvable:
            solve_batch(solvable, concurrency=concurrency, settings=settings, on_result=record, cluster=cluster,
                        **clients)
        for entry in todo:  # after the others: a run that cannot start leaves the output as it was
            if entry.error is not None:
                record(entry.item, entry.error)
    return BatchSummary(total=len(entries), skipped=len(entries) - len(todo), **counts)


class _Output:
    """The results file, opened for appending when the first line is written (or when the run ends
    without one), after it is rewritten to the ``kept`` lines."""

    def __init__(self, path: Path, kept: list[str]) -> None:
        self.path, self.kept = path, kept
        self._sink: IO[str] | None = None

    def __enter__(self) -> _Output:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is None and self._sink is None:
            self._open()  # nothing new: the rewrite still drops failures, duplicates and cut lines
        if self._sink is not None:
            self._sink.close()

    def write(self, text: str) -> None:
        """Append one line and flush it (``json.dumps`` writes ASCII: a lone surrogate is escaped)."""
        if self._sink is None:
            self._open()
        assert self._sink is not None
        self._sink.write(text + "\n")
        self._sink.flush()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in self.kept), encoding="utf-8")
        os.replace(tmp, self.path)
        self._sink = self.path.open("a", encoding="utf-8")
