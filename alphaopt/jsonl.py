"""Reading what people hand us as text: one JSONL reader for every input file (batches, training
files, benchmark datasets) and the checks that bytes and strings are text at all.

Every refusal is an ``InputError`` that names the place (file and line, or argument) and the fix:
a non-UTF-8 byte, a NUL byte (a binary file), a line that is not JSON, or a string holding a
lone surrogate (what ``\\udce9`` in JSON, or an undecodable byte on the command line, becomes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alphaopt.errors import InputError

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Record:
    """One non-blank line of a JSONL file: its 1-based line ``number`` and its parsed ``value``."""

    number: int
    value: Any


def decode(data: bytes, name: str) -> str:
    """``data`` as UTF-8 text (a leading byte-order mark dropped).

    Raises:
        InputError: a NUL byte (a binary file) or bytes that are not UTF-8; the message names the
            line and column of the first one.
    """
    data = data.removeprefix(_BOM)
    nul = data.find(b"\x00")
    if nul >= 0:
        line, column = _place(data, nul)
        raise InputError(f"{name} line {line} (column {column}) holds a NUL byte: it looks like a binary file, "
                         "not text. Pass a UTF-8 text file.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _place(data, exc.start)
        raise InputError(f"{name} line {line} (column {column}) is not UTF-8 text (byte 0x{data[exc.start]:02x}): "
                         "save the file as UTF-8.") from exc


def check_text(text: str, name: str) -> str:
    """``text`` unchanged when it is valid Unicode, that is, encodable as UTF-8.

    A lone surrogate is what an undecodable byte on the command line becomes (Python's
    ``surrogateescape``), or what a JSON ``"\\udce9"`` escape decodes to; it cannot be stored,
    logged or sent to a model.

    Raises:
        InputError: naming the first bad character's position (and the byte it stood for, if any).
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        char = text[exc.start]
        escaped = 0xDC80 <= ord(char) <= 0xDCFF  # surrogateescape's stand-in for a byte
        meaning = f"an undecodable byte 0x{ord(char) - 0xDC00:02x}" if escaped else "invalid Unicode"
        raise InputError(f"{name} is not UTF-8 text: character {exc.start + 1} is a lone surrogate "
                         f"(U+{ord(char):04X}, {meaning}). Pass the text as UTF-8.") from exc
    return text


def read_jsonl(source: Path | bytes, name: str | None = None) -> list[Record]:
    """The non-blank lines of a JSONL file (a path, or its bytes), parsed.

    Lines are split on ``\\n`` only (a JSON string may hold U+2028 and other characters that
    ``str.splitlines`` would split on); a ``\\r`` before it is dropped.

    Raises:
        InputError: the file cannot be read, is not UTF-8 text, or a line is not JSON; the
            message names the line.
    """
    if isinstance(source, Path):
        name = name or str(source)
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise InputError(f"Cannot read {name}: {exc.strerror or exc}. Check the path.") from exc
    else:
        data, name = source, name or "input"
    records = []
    for number, line in enumerate(decode(data, name).split("\n"), 1):
        if not line.strip():
            continue
        try:
            records.append(Record(number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise InputError(f"{name} line {number} is not valid JSON ({exc.msg}): fix or remove that line.") from exc
    return records


def _place(data: bytes, offset: int) -> tuple[int, int]:
    """The 1-based line and column (in bytes) of ``offset`` in ``data``."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, offset - line_start + 1
