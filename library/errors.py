"""The library's exceptions. Each message names the identifier involved and how to fix the problem.

``library`` is a leaf package, so these do not derive from ``alphaopt.errors``; alphaopt
catches :class:`LibraryError` at its boundary.
"""

from __future__ import annotations


class LibraryError(Exception):
    """Base class for errors raised by the experience library."""


class NotFoundError(LibraryError, KeyError):
    """An insight, label, task or run id that the library does not hold."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class InvalidInsightError(LibraryError, ValueError):
    """An insight draft, revision or status change that the library refuses."""


class ConflictError(LibraryError):
    """Another writer got there first: a merge member already retired, a claim held by another worker."""


class LockTimeoutError(ConflictError, TimeoutError):
    """The library's merge lock stayed held by another worker for longer than the caller waits."""


class ImportLineError(LibraryError, ValueError):
    """A JSONL import line that cannot be read; nothing from that import was written.

    Attributes:
        line: The 1-based line number of the bad line.
    """

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


class EmbeddingModelError(LibraryError):
    """The offline embedding model or its tokenizer is missing or corrupt."""
