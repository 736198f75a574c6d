"""Recording library versions: each transaction that changes insights or labels gets one.

Internal to the store. A content-changing method first calls :func:`serialize` (so writers of
content queue on one row lock, in one order, and library versions commit in number order),
then :func:`record` with the rows it changed. The first ``record`` of a transaction allocates
the next library version number from a counter; later ones in the same transaction add to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from sqlalchemy import select
from sqlalchemy.orm import Session

from library.db import bump, now_iso
from library.tables import (
    Counter,
    InsightRow,
    InsightStateRow,
    LabelRow,
    LabelStateRow,
    LibraryVersionRow,
)

#: ``Session.info`` keys: the open transaction's library version, and its reason and actor when
#: the caller named them (``store.transaction(reason=..., actor=...)``).
VERSION_KEY, REASON_KEY, ACTOR_KEY = "library_version", "library_reason", "library_actor"
_STEP_KEY = "library_step"
DELETED = "deleted"  # the status an insight state records for a deleted insight
_REASON_CHARS = 1000


def serialize(s: Session) -> None:
    """Take the library-version lock for the rest of the transaction (PostgreSQL: a row lock on
    the counter; SQLite's writing transactions hold the database's write lock already)."""
    s.execute(select(Counter.value).where(Counter.name == VERSION_KEY).with_for_update())


@contextmanager
def step(s: Session, reason: str) -> Iterator[None]:
    """Note the changes made inside the block as ``reason`` (a step such as a merge), not one
    note per row; the outermost step names them."""
    if _STEP_KEY in s.info:
        yield
        return
    s.info[_STEP_KEY] = reason
    try:
        yield
    finally:
        del s.info[_STEP_KEY]


def _version(s: Session, reason: str) -> LibraryVersionRow:
    reason = s.info.get(_STEP_KEY, reason)
    number = s.info.get(VERSION_KEY)
    row = s.get(LibraryVersionRow, number) if number is not None else None
    if row is None:  # the first change of this transaction (or its savepoint was rolled back)
        number = bump(s, VERSION_KEY)
        row = LibraryVersionRow(number=number, created_at=now_iso(), reason=s.info.get(REASON_KEY) or reason,
                                actor=s.info.get(ACTOR_KEY))
        s.add(row)
        s.info[VERSION_KEY] = number
    elif REASON_KEY not in s.info and reason not in row.reason.split("; "):
        joined = f"{row.reason}; {reason}"
        row.reason = joined if len(joined) <= _REASON_CHARS else row.reason.removesuffix("; …") + "; …"
    return row


def record(s: Session, reason: str, *, insights: Iterable[InsightRow] = (), labels: Iterable[LabelRow] = (),
           deleted: Iterable[str] = ()) -> int:
    """Record changed insights and labels under the transaction's library version.

    Args:
        s: The open writing session.
        reason: A short note of this change (joined with the others of the transaction).
        insights: Insight rows whose version pointer or status changed (their state now).
        labels: Label rows added, redefined, retired or brought back.
        deleted: Ids of insights deleted for good.

    Returns:
        The library version number.
    """
    version = _version(s, reason)
    s.flush()
    for ins in insights:
        _state(s, version.number, ins.id, ins.current_version, ins.status)
    for insight_id in deleted:
        _state(s, version.number, insight_id, 0, DELETED)
    for label in labels:
        key = (version.number, label.id)
        state = s.get(LabelStateRow, key) or LabelStateRow(library_version=version.number, label_id=label.id)
        state.display, state.definition, state.retired = label.display, label.definition, label.retired_at is not None
        s.add(state)
    bump(s, "revision")  # version_stamp() moves with every change
    s.flush()
    return version.number


def _state(s: Session, number: int, insight_id: str, version: int, status: str) -> None:
    state = s.get(InsightStateRow, (number, insight_id))
    if state is None:
        s.add(InsightStateRow(library_version=number, insight_id=insight_id, version=version, status=status))
    else:
        state.version, state.status = version, status
