"""The reviewable JSONL form of a library: one insight per line, sorted by id, keys sorted.

An optional first line ``{"_header": {...}}`` records what produced the library (command,
settings, number of training problems) and the texts of the insights' source problems. Each
insight line carries its current version at the top level, its label's display name and
definition, and its earlier versions under ``history``. Only stored values appear, so exporting
twice gives identical bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from library.errors import ImportLineError
from library.models import Insight, Label, Provenance, Status
from library.taxonomy import Stage

HEADER_KEY = "_header"
#: The header key holding ``{task id: problem text}`` for the insights' source problems.
SOURCE_PROBLEMS = "source_problems"
ID_PATTERN = r"^I[0-9]{4,}$"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class VersionRecord(_Record):
    """One version of an insight as it appears in the file."""

    version: int = Field(ge=1)
    stage: Stage
    level1: str = Field(min_length=1)
    level2: str = Field(min_length=1)
    condition: str = Field(min_length=1)
    explanation: str = Field(min_length=1)
    example: str
    provenance: Provenance
    reason: str | None
    version_created_at: str


class LabelRecord(_Record):
    """The display name and definition of an insight's current label."""

    display: str
    definition: str


class InsightRecord(VersionRecord):
    """One line of the file: an insight's current version plus its history."""

    id: str = Field(pattern=ID_PATTERN)
    status: Status
    label: LabelRecord
    created_at: str
    updated_at: str
    history: list[VersionRecord]

    @field_validator("history")
    @classmethod
    def _ordered(cls, history: list[VersionRecord]) -> list[VersionRecord]:
        numbers = [v.version for v in history]
        if numbers != list(range(1, len(history) + 1)):
            raise ValueError(f"history versions must be 1, 2, ... in order, got {numbers}")
        return history

    @model_validator(mode="after")
    def _current_follows_history(self) -> InsightRecord:
        if self.version != len(self.history) + 1:
            raise ValueError(f"version {self.version} must follow a history of {len(self.history)} versions")
        return self


def _version_fields(insight: Insight) -> dict[str, Any]:
    return {
        "version": insight.version,
        "stage": insight.stage.value,
        "level1": insight.level1,
        "level2": insight.level2,
        "condition": insight.condition,
        "explanation": insight.explanation,
        "example": insight.example,
        "provenance": insight.provenance.model_dump(mode="json"),
        "reason": insight.reason,
        "version_created_at": insight.version_created_at,
    }


def to_record(current: Insight, history: Sequence[Insight], label: Label) -> dict[str, Any]:
    """The file form of one insight.

    Args:
        current: The insight's current version.
        history: Its earlier versions, oldest first.
        label: The current version's taxonomy label.
    """
    return {
        **_version_fields(current),
        "id": current.id,
        "status": current.status.value,
        "label": {"display": label.display, "definition": label.definition},
        "created_at": current.created_at,
        "updated_at": current.updated_at,
        "history": [_version_fields(v) for v in history],
    }


def dump_line(obj: dict[str, Any]) -> str:
    """One JSONL line (with its newline): keys sorted, compact, UTF-8 kept readable."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"


def id_number(insight_id: str) -> int:
    """The number in an insight id (``"I0042"`` → 42), for ordering and the id counter."""
    return int(insight_id[1:])


@contextmanager
def _open(target: str | Path | IO[str], mode: str) -> Iterator[IO[str]]:
    if isinstance(target, (str, Path)):
        with open(target, mode, encoding="utf-8", newline="\n") as handle:
            yield handle
    else:
        yield target


def write(target: str | Path | IO[str], records: Sequence[dict[str, Any]], header: dict[str, Any] | None) -> int:
    """Write the header (if any) and the records; return how many records were written."""
    with _open(target, "w") as out:
        if header is not None:
            out.write(dump_line({HEADER_KEY: header}))
        for record in records:
            out.write(dump_line(record))
    return len(records)


def _parse(number: int, line: str) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise ImportLineError(number, f"not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise ImportLineError(number, f"expected a JSON object, got {type(obj).__name__}")
    return obj


def read(source: str | Path | IO[str]) -> tuple[dict[str, Any] | None, list[tuple[int, InsightRecord]]]:
    """Read and validate a whole file before anything is written.

    Returns:
        The header (or ``None``) and the insight records with their 1-based line numbers.

    Raises:
        ImportLineError: A line is not JSON, not a valid insight, a misplaced header or a
            repeated id; the message names the line.
    """
    header: dict[str, Any] | None = None
    records: list[tuple[int, InsightRecord]] = []
    seen: dict[str, int] = {}
    with _open(source, "r") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            obj = _parse(number, line)
            if HEADER_KEY in obj:
                if number != 1 or len(obj) != 1 or not isinstance(obj[HEADER_KEY], dict):
                    raise ImportLineError(number, f"a {HEADER_KEY!r} object may only be the whole first line")
                header = obj[HEADER_KEY]
                continue
            try:
                record = InsightRecord.model_validate(obj)
            except ValidationError as e:
                raise ImportLineError(number, f"not a valid insight: {_brief(e)}") from None
            if record.id in seen:
                raise ImportLineError(number, f"insight {record.id!r} already appeared on line {seen[record.id]}")
            seen[record.id] = number
            records.append((number, record))
    return header, records


def read_header(source: str | Path | IO[str]) -> dict[str, Any] | None:
    """The ``_header`` of an exported file, or ``None`` when it has none."""
    return read(source)[0]


def source_problems(header: dict[str, Any] | None) -> dict[str, str]:
    """The header's ``source_problems`` (empty when absent).

    Raises:
        ImportLineError: It is not an object of task id → problem text (line 1 is the header).
    """
    found = (header or {}).get(SOURCE_PROBLEMS, {})
    if not isinstance(found, dict) or not all(
            isinstance(k, str) and "/" in k and isinstance(v, str) and v.strip() for k, v in found.items()):
        raise ImportLineError(1, f"{SOURCE_PROBLEMS!r} must map task ids (\"dataset/item\") to problem texts")
    return found


def _brief(error: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '(line)'}: {e['msg']}" for e in error.errors()[:3]]
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
