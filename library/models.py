"""The library's public data: frozen pydantic models returned to callers (never ORM objects)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field, field_validator

from library.taxonomy import LabelKey, Stage, canonical, parse_stage

JsonDict = dict[str, Any]


class Status(StrEnum):
    """An insight's lifecycle state."""

    CANDIDATE = "candidate"
    VERIFIED = "verified"
    RETIRED = "retired"


class ClaimStatus(StrEnum):
    """A task claim's state."""

    CLAIMED = "claimed"  # a worker holds it until its lease runs out
    RELEASED = "released"  # given up: claimable at once
    DONE = "done"  # completed: never handed out again


class RunStatus(StrEnum):
    """A learning run's state."""

    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"  # stopped on purpose (a token budget); a rerun goes on
    FAILED = "failed"


class AttemptKind(StrEnum):
    """The usual kinds of attempt; ``record_attempt`` also accepts other short strings."""

    SOLVE = "solve"
    EXPLORE = "explore"
    VERIFY_WITH = "verify_with"
    VERIFY_WITHOUT = "verify_without"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Provenance(_Frozen):
    """Where an insight version came from.

    Attributes:
        source_tasks: Training task ids the insight was learned or refined from.
        model: The model id that wrote it.
        prompt_version: The prompt name and hash (or version tag) that produced it.
        evidence: Verification evidence, e.g. ``{"without": 0, "with": 2, "k": 2}``.
        run_id: The learning run that wrote this version, if any.
    """

    source_tasks: tuple[str, ...] = ()
    model: str | None = None
    prompt_version: str | None = None
    evidence: JsonDict = Field(default_factory=dict)
    run_id: str | None = None


class InsightDraft(_Frozen):
    """A new insight's content, before the library gives it an id."""

    stage: Stage
    level1: str
    level2: str
    condition: str = Field(min_length=1)
    explanation: str = Field(min_length=1)
    example: str = ""

    @field_validator("stage", mode="before")
    @classmethod
    def _stage(cls, value: Any) -> Any:
        return parse_stage(value) if isinstance(value, str) else value

    @field_validator("level1", "level2")
    @classmethod
    def _label(cls, value: str) -> str:
        canonical(value)  # rejects blank labels; the store matches labels by their canonical form
        return " ".join(value.split())

    @property
    def label(self) -> LabelKey:
        """The draft's canonical taxonomy label."""
        return LabelKey.of(self.stage, self.level1, self.level2)


class RetireChanges(TypedDict, total=False):
    """Fields :meth:`LibraryStore.retire` may change besides its evidence and reason."""

    stage: str
    level1: str
    level2: str
    condition: str
    explanation: str
    example: str
    source_tasks: list[str] | tuple[str, ...]
    model: str | None
    prompt_version: str | None
    run_id: str | None


class InsightChanges(RetireChanges, total=False):
    """Fields :meth:`LibraryStore.revise` may change; omitted fields keep their current value."""

    evidence: JsonDict
    reason: str | None


class Insight(_Frozen):
    """One version of an insight (the current one unless it came from ``versions()``).

    Attributes:
        id: Stable id such as ``"I0001"``; never reused.
        version: 1 for the first version, then 2, 3, ... per revision.
        is_current: Whether this is the version the insight points at.
        status: The insight's status now (status is not versioned).
        reason: Why this version was written (``None`` for the first).
        created_at: When the insight (version 1) was created, ISO-8601 UTC.
        version_created_at: When this version was written.
        updated_at: When the insight last changed (new version or status).
    """

    id: str
    version: int
    is_current: bool
    status: Status
    stage: Stage
    level1: str
    level2: str
    condition: str
    explanation: str
    example: str
    provenance: Provenance
    reason: str | None
    created_at: str
    version_created_at: str
    updated_at: str

    @property
    def label(self) -> LabelKey:
        """The insight's taxonomy label."""
        return LabelKey(self.stage, self.level1, self.level2)


class Label(_Frozen):
    """A taxonomy label; ``level1``/``level2`` are canonical forms."""

    stage: Stage
    level1: str
    level2: str
    display: str
    definition: str
    origin: str  # "seed" or "learned"
    retired: bool = False  # retired by ``retire_label``: no insight in use carries it

    @property
    def key(self) -> LabelKey:
        """The label's canonical identity."""
        return LabelKey(self.stage, self.level1, self.level2)


class Task(_Frozen):
    """A training problem; ``answer`` is stored for learning only, never shown to the solver."""

    id: str
    dataset: str
    item_id: str
    text: str
    answer: Any = None


class Attempt(_Frozen):
    """One try at a task during learning."""

    id: int
    task_id: str
    run_id: str | None
    kind: str
    status: str
    program: str | None
    objective: float | None
    error: str | None
    tokens: int
    created_at: str


class Evidence(_Frozen):
    """Whether an insight was retrieved and used for a task or run, and how that went."""

    id: int
    insight_id: str
    version: int
    stage: Stage
    task_id: str | None
    run_id: str | None
    retrieved: bool
    used: bool
    success: bool | None
    created_at: str


class LearningRun(_Frozen):
    """One learning run over training tasks."""

    id: str
    status: RunStatus
    started_at: str
    finished_at: str | None
    settings: JsonDict
    counters: JsonDict
    tokens: int


class LibraryVersion(_Frozen):
    """One version of the whole library: what a committed change (one transaction) left.

    Attributes:
        number: 1, 2, 3, ... in commit order; never reused.
        created_at: When the change was written, ISO-8601 UTC.
        reason: What changed and why, e.g. ``"merge I0001, I0002 into I0007"``.
        actor: Who changed it (the store's or the transaction's ``actor``), if known.
        insights: Ids of the insights whose version or status this change set.
        labels: Paths (``stage/level1/level2``) of the labels it added, redefined or retired.
    """

    number: int
    created_at: str
    reason: str
    actor: str | None
    insights: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()


class Claim(_Frozen):
    """A worker's claim on a task (see ``LibraryStore.claim_tasks``).

    Attributes:
        task_id: The claimed key: a training task id or a content hash.
        worker_id: The worker that holds (or last held) it.
        status: Claimed, released or done.
        expires_at: When the lease runs out, ISO-8601 UTC on the database's clock.
        expired: Whether the lease had run out when this was read (a claimed task is then free).
        attempts: How many times it was handed out.
        outcome: What ``complete`` recorded.
        claimed_at: When it was last handed out.
        finished_at: When it was completed.
    """

    task_id: str
    worker_id: str
    status: ClaimStatus
    expires_at: str
    expired: bool
    attempts: int
    outcome: str | None
    claimed_at: str
    finished_at: str | None
