"""Learning records: training tasks, attempts, retrieval evidence and learning runs.

A mixin of :class:`library.store.LibraryStore`; every method joins the caller's
``store.transaction()`` when one is open.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from library.db import bump, now_iso
from library.errors import InvalidInsightError, LibraryError, NotFoundError
from library.models import Attempt, Evidence, JsonDict, LearningRun, RunStatus, Task
from library.tables import (
    AttemptRow,
    EvidenceRow,
    InsightRow,
    LabelRow,
    RunRow,
    TaskRow,
    VersionRow,
)
from library.taxonomy import parse_stage


def task_id_for(dataset: str, item_id: str) -> str:
    """The id of training task ``item_id`` of ``dataset``: ``"<dataset>/<item_id>"``."""
    return f"{dataset}/{item_id}"


def _task(row: TaskRow) -> Task:
    return Task(id=row.id, dataset=row.dataset, item_id=row.item_id, text=row.text, answer=row.answer)


def _attempt(row: AttemptRow) -> Attempt:
    return Attempt(id=row.id, task_id=row.task_id, run_id=row.run_id, kind=row.kind, status=row.status,
                   program=row.program, objective=row.objective, error=row.error, tokens=row.tokens,
                   created_at=row.created_at)


def _evidence(row: EvidenceRow) -> Evidence:
    return Evidence(id=row.id, insight_id=row.insight_id, version=row.version, stage=parse_stage(row.stage),
                    task_id=row.task_id, run_id=row.run_id, retrieved=row.retrieved, used=row.used,
                    success=row.success, created_at=row.created_at)


def _run(row: RunRow) -> LearningRun:
    return LearningRun(id=row.id, status=RunStatus(row.status), started_at=row.started_at,
                       finished_at=row.finished_at, settings=row.settings, counters=row.counters, tokens=row.tokens)


class TrainingRecords:
    """Tasks, attempts, evidence and runs (mixed into ``LibraryStore``)."""

    def transaction(self, *, reason: str | None = None, actor: str | None = None) -> AbstractContextManager[Session]:
        """Open (or join) a transaction; provided by ``LibraryStore``."""
        raise NotImplementedError

    def _reading(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    # -- tasks

    def add_task(self, dataset: str, item_id: str, text: str, answer: Any = None) -> Task:
        """Register a training problem; adding the same dataset and item again returns the stored one
        (with ``answer`` filled in when it was stored without one, as an imported library's
        source problems are).

        Args:
            dataset: Dataset name, e.g. ``"nl4opt"``.
            item_id: The item's id within the dataset.
            text: The problem text.
            answer: The known optimum (any JSON value), kept for learning only.

        Raises:
            LibraryError: The item is already stored with a different text.
        """
        try:
            return self._add_task(dataset, item_id, text, answer)
        except IntegrityError:  # another worker inserted it between this one's read and insert: it is there now
            return self._add_task(dataset, item_id, text, answer)

    def _add_task(self, dataset: str, item_id: str, text: str, answer: Any) -> Task:
        task_id = task_id_for(dataset, item_id)
        with self.transaction() as s:
            row = s.get(TaskRow, task_id)
            if row is None:
                row = TaskRow(id=task_id, dataset=dataset, item_id=item_id, text=text, answer=answer,
                              created_at=now_iso())
                s.add(row)
                s.flush()
            elif row.text != text:
                raise LibraryError(f"task {task_id!r} is already stored with a different text; "
                                   "give the changed problem a new item id")
            elif row.answer is None and answer is not None:  # imported as a source problem, text only
                row.answer = answer
                s.flush()
            return _task(row)

    def get_task(self, task_id: str) -> Task:
        """The training task ``task_id``."""
        with self._reading() as s:
            row = s.get(TaskRow, task_id)
            if row is None:
                raise NotFoundError(f"no training task {task_id!r}; add it with add_task()")
            return _task(row)

    def answered_tasks(self, task_ids: Iterable[str]) -> list[Task]:
        """Those of ``task_ids`` this store holds with an answer (an imported library's source
        problems come as text only), in the given order."""
        with self._reading() as s:
            rows = [s.get(TaskRow, t) for t in task_ids]
            return [_task(r) for r in rows if r is not None and r.answer is not None]

    def tasks(self, *, dataset: str | None = None) -> list[Task]:
        """All training tasks (of ``dataset``), by id."""
        query = select(TaskRow).order_by(TaskRow.id)
        if dataset is not None:
            query = query.where(TaskRow.dataset == dataset)
        with self._reading() as s:
            return [_task(r) for r in s.scalars(query)]

    # -- attempts

    def record_attempt(self, task_id: str, *, kind: str, status: str, run_id: str | None = None,
                       program: str | None = None, objective: float | None = None, error: str | None = None,
                       tokens: int = 0) -> Attempt:
        """Record one attempt at a training task.

        Args:
            task_id: A stored training task.
            kind: ``solve``, ``explore``, ``verify_with``, ``verify_without`` or another short tag.
            status: The outcome, e.g. the solver status or ``"correct"``.
            run_id: The learning run it belongs to.
            program: The generated program.
            objective: The objective value reached.
            error: The error text, if it failed.
            tokens: LLM tokens it used.
        """
        with self.transaction() as s:
            if s.get(TaskRow, task_id) is None:
                raise NotFoundError(f"no training task {task_id!r}; add it with add_task() first")
            if run_id is not None and s.get(RunRow, run_id) is None:
                raise NotFoundError(f"no learning run {run_id!r}; start one with start_run()")
            row = AttemptRow(task_id=task_id, run_id=run_id, kind=kind, status=status, program=program,
                             objective=objective, error=error, tokens=tokens, created_at=now_iso())
            s.add(row)
            s.flush()
            return _attempt(row)

    def attempts(self, *, task_id: str | None = None, run_id: str | None = None,
                 kind: str | None = None) -> list[Attempt]:
        """Recorded attempts, oldest first, filtered by task, run and kind."""
        query = select(AttemptRow).order_by(AttemptRow.id)
        for column, value in ((AttemptRow.task_id, task_id), (AttemptRow.run_id, run_id), (AttemptRow.kind, kind)):
            if value is not None:
                query = query.where(column == value)
        with self._reading() as s:
            return [_attempt(r) for r in s.scalars(query)]

    # -- retrieval evidence

    def record_evidence(self, insight_id: str, *, task_id: str | None = None, run_id: str | None = None,
                        version: int | None = None, retrieved: bool = True, used: bool = False,
                        success: bool | None = None) -> Evidence:
        """Record that an insight was retrieved (and perhaps used) for a task or run, and the outcome.

        Args:
            insight_id: The insight.
            task_id: The training task or problem id (at least one of ``task_id``/``run_id``).
            run_id: The learning or solve run id.
            version: The version shown; the current one when omitted.
            retrieved: Whether recall returned it.
            used: Whether the applicability check kept it for the prompt.
            success: Whether the task was then solved correctly (``None``: unknown).
        """
        if task_id is None and run_id is None:
            raise InvalidInsightError("evidence needs a task_id or a run_id to say what it is evidence from")
        with self.transaction() as s:
            insight = s.get(InsightRow, insight_id)
            if insight is None:
                raise NotFoundError(f"no insight {insight_id!r}")
            number = insight.current_version if version is None else version
            ver = s.get(VersionRow, (insight_id, number))
            if ver is None:
                raise NotFoundError(f"insight {insight_id!r} has no version {number}")
            stage = s.scalar(select(LabelRow.stage).where(LabelRow.id == ver.label_id))
            row = EvidenceRow(insight_id=insight_id, version=number, stage=stage, task_id=task_id,
                              run_id=run_id, retrieved=retrieved, used=used, success=success, created_at=now_iso())
            s.add(row)
            s.flush()
            return _evidence(row)

    def evidence_for(self, insight_id: str) -> list[Evidence]:
        """All retrieval evidence recorded for ``insight_id``, oldest first."""
        query = select(EvidenceRow).where(EvidenceRow.insight_id == insight_id).order_by(EvidenceRow.id)
        with self._reading() as s:
            return [_evidence(r) for r in s.scalars(query)]

    # -- learning runs

    def start_run(self, settings: JsonDict | None = None) -> LearningRun:
        """Start a learning run with a new id (``"R0001"``, ...; never reused)."""
        with self.transaction() as s:
            row = RunRow(id=f"R{bump(s, 'run'):04d}", status=RunStatus.RUNNING.value, started_at=now_iso(),
                         finished_at=None, settings=settings or {}, counters={}, tokens=0)
            s.add(row)
            s.flush()
            return _run(row)

    def _run_row(self, s: Session, run_id: str) -> RunRow:
        row = s.get(RunRow, run_id)
        if row is None:
            raise NotFoundError(f"no learning run {run_id!r}; start one with start_run()")
        return row

    def update_run(self, run_id: str, *, counters: JsonDict | None = None, tokens: int | None = None) -> LearningRun:
        """Replace a run's counters and/or token total (call it in each step's transaction)."""
        with self.transaction() as s:
            row = self._run_row(s, run_id)
            if counters is not None:
                row.counters = dict(counters)
            if tokens is not None:
                row.tokens = tokens
            s.flush()
            return _run(row)

    def finish_run(self, run_id: str, *, status: RunStatus | str = RunStatus.FINISHED,
                   counters: JsonDict | None = None, tokens: int | None = None) -> LearningRun:
        """Mark a run finished (or failed), with its final counters and tokens."""
        with self.transaction():
            self._run_row_status(run_id, RunStatus(status))
            return self.update_run(run_id, counters=counters, tokens=tokens)

    def _run_row_status(self, run_id: str, status: RunStatus) -> None:
        with self.transaction() as s:
            row = self._run_row(s, run_id)
            row.status, row.finished_at = status.value, now_iso()

    def get_run(self, run_id: str) -> LearningRun:
        """The learning run ``run_id``."""
        with self._reading() as s:
            return _run(self._run_row(s, run_id))

    def runs(self) -> list[LearningRun]:
        """Every learning run, oldest first."""
        with self._reading() as s:
            return [_run(r) for r in s.scalars(select(RunRow).order_by(RunRow.id))]

    def done_tasks(self, kind: str = "done") -> set[str]:
        """Ids of the tasks that have an attempt of this kind (the learner marks finished tasks so)."""
        with self._reading() as s:
            return set(s.scalars(select(AttemptRow.task_id).where(AttemptRow.kind == kind)))
