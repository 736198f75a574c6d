"""The agent's typed state, its run context, and the public ``Solution``."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol, TypedDict

from pydantic import BaseModel, Field

from alphaopt.agent.applied import Edit
from alphaopt.agent.reading import Reading
from alphaopt.config import Settings
from alphaopt.llm.client import LLMClient
from solvers import PlanCheck, Proof, SolverRunner, SolveStatus

Stage = Literal["write_program", "repair", "diagnose", "review"]


class InsightSource(Protocol):
    """What the agent needs of the experience library."""

    def retrieve(self, problem: str, *, llm: LLMClient, run_id: str) -> list[dict[str, Any]]:
        """Insights that apply to the problem, each with at least id, condition and explanation."""
        ...


@dataclass
class AgentContext:
    """Settings and clients, handed to every node through LangGraph's runtime context."""

    settings: Settings
    llm: LLMClient
    runner: SolverRunner
    library: InsightSource | None = None


class SolveState(TypedDict, total=False):
    """The graph's state; list and counter fields accumulate across nodes."""

    run_id: str
    problem: str
    reading: Reading  # what the text says, read once at the start (reading.read)
    insights: list[dict[str, Any]]
    edits: list[Edit]  # the recalled insights' edits that match the text (applied.edits)
    formulation: str
    program: str
    fixes: list[str]
    truncated: bool  # the program's reply stopped at the token limit unfinished
    stage: Stage
    result: dict[str, Any]  # the last run's SolveResult.model_dump(): its "status" is a SolveStatus
    attempts: Annotated[list[dict[str, Any]], operator.add]
    repairs: int
    diagnoses: int
    confirmed: bool
    kept: dict[str, Any] | None  # the optimal result and program before a patch (nodes._patch)
    reviewed: bool  # this sample's optimum was shown to the model with each told lesson (nodes._review)
    samples: int  # how many samples this run may draw (Settings.samples; 1 for an edited formulation)
    resample: int  # more samples when none ended optimal (resample_failed; 0 for an edited formulation)
    sample: int
    candidates: Annotated[list[dict[str, Any]], operator.add]
    chosen_sample: int
    tokens_in: Annotated[int, operator.add]
    tokens_out: Annotated[int, operator.add]
    llm_calls: Annotated[int, operator.add]
    cached_calls: Annotated[int, operator.add]
    llm_ms: Annotated[float, operator.add]
    model: str


class Attempt(BaseModel):
    """One program run: the first, a repair, or one after a diagnosis."""

    stage: Stage
    program: str
    status: SolveStatus
    objective: float | None = None
    error: str | None = None
    fixes: list[str] = Field(default_factory=list)
    wall_time_s: float = 0.0
    sample: int = 0
    solver: str | None = None  # "highs" or "scip": the solver that read the model (None: it never got one)


class Candidate(BaseModel):
    """The final outcome of one sample; the answer is chosen among these by vote."""

    sample: int
    status: SolveStatus
    objective: float | None = None
    chosen: bool = False


class TokenUsage(BaseModel):
    """Tokens and calls spent on one problem."""

    input: int = 0
    output: int = 0
    calls: int = 0
    cached_calls: int = 0


class Timings(BaseModel):
    """Where the time went, in seconds."""

    llm_s: float = 0.0
    solver_s: float = 0.0
    total_s: float = 0.0


class Solution(BaseModel):
    """What ``alphaopt.solve`` returns: the plan, the math, the program and how it got there."""

    run_id: str
    problem: str
    status: SolveStatus
    objective: float | None = None
    sense: str | None = None
    variables: dict[str, float] = Field(default_factory=dict)
    duals: dict[str, float] | None = None
    slacks: dict[str, float] | None = None
    is_mip: bool = False
    solver: str | None = None  # "highs" or "scip": the solver that answered (None: no model reached one)
    model_class: str | None = None  # lp, milp, qp, miqp, nonconvex_qp, qcqp, miqcqp, nlp, minlp
    proof: Proof = Proof.NONE  # global: proven optimal; local: a local optimum only; feasible: a plan at a limit
    gap: float | None = None  # the relative gap the solver reported for the plan (integers or SCIP)
    check: PlanCheck | None = None  # the solver's plan checked against the model file it read
    conflict: list[dict[str, str]] | None = None  # infeasible: constraints that cannot hold together
    unbounded: list[str] | None = None  # unbounded: variables that grow without limit
    formulation: str = ""  # the model's own math (empty when it wrote the program directly)
    model_text: str = ""  # the model as built and solved, in algebraic form
    program: str = ""
    attempts: list[Attempt] = Field(default_factory=list)
    candidates: list[Candidate] = Field(default_factory=list)  # one per sample, the chosen one marked
    insights: list[dict[str, Any]] = Field(default_factory=list)
    tokens: TokenUsage = Field(default_factory=TokenUsage)
    timings: Timings = Field(default_factory=Timings)
    model: str = ""
    sandbox: str = ""  # how the program was isolated, then the isolation line
    isolation: str = ""  # caps for the run as a whole (cgroup), or why there are none
    error: str | None = None
    log_tail: str = ""

    @property
    def ok(self) -> bool:
        """True when the solver proved the plan optimal."""
        return self.status is SolveStatus.OPTIMAL

    def nonzero_variables(self, tol: float = 1e-9) -> dict[str, float]:
        """The decision values that are not zero (the plan)."""
        return {k: v for k, v in self.variables.items() if abs(v) > tol}


@dataclass
class BatchItem:
    """One problem of a batch, with its id."""

    id: str
    problem: str
