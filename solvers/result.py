"""The result of running one program: plain data, never an exception."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field


class SolverHarnessError(RuntimeError):
    """The harness itself broke (sandbox cannot start, worker protocol failure).

    Problems caused by the program or the model are reported as a ``SolveResult``
    status instead; this is raised only when no result can be produced at all.
    """


class SolveStatus(StrEnum):
    """Outcome of one program run."""

    OPTIMAL = "optimal"
    FEASIBLE = "feasible"  # incumbent that is not proven optimal (e.g. stopped at a limit)
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    INFEASIBLE_OR_UNBOUNDED = "infeasible_or_unbounded"
    TIME_LIMIT = "time_limit"  # solver limit hit without an incumbent
    ERROR = "error"  # the program raised (Python, Pyomo or solver error)
    INVALID_PROGRAM = "invalid_program"  # program contract violated
    TIMEOUT = "timeout"  # wall-clock or CPU limit: the process was killed
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    KILLED = "killed"  # any other signal / process limit / worker died
    UNKNOWN = "unknown"  # unmapped solver termination condition

    @classmethod
    def parse(cls, value: object) -> SolveStatus:
        """Map any string to a status; unknown strings become ``UNKNOWN``."""
        try:
            return cls(str(value).lower())
        except ValueError:
            return cls.UNKNOWN


class ConflictConstraint(BaseModel):
    """A constraint in an infeasible model's conflict."""

    name: str
    text: str  # as built: "body <= bound"


class SolveResult(BaseModel):
    """Everything the agent needs to know about one run."""

    status: SolveStatus
    termination_condition: str | None = None  # raw solver termination condition
    objective: float | None = None  # only for optimal / feasible
    sense: Literal["minimize", "maximize"] | None = None
    variables: dict[str, float] = Field(default_factory=dict)  # Pyomo name -> value
    variables_truncated: bool = False  # more variables than the cap were in the model
    is_mip: bool = False
    duals: dict[str, float] | None = None  # LPs only: constraint name -> dual
    slacks: dict[str, float] | None = None  # LPs only: constraint name -> slack
    reduced_costs: dict[str, float] | None = None  # LPs only: variable name -> reduced cost
    solve_time_s: float | None = None  # time inside the solver
    wall_time_s: float = 0.0  # whole run as seen by the caller
    # Infeasible models: constraints that cannot hold together (an irreducible subset)
    conflict: list[ConflictConstraint] | None = None
    unbounded: list[str] | None = None  # unbounded models: the variables that grow without limit
    model_text: str = ""  # the built model in algebraic form (objective, constraints, variables)
    log_tail: str = ""  # tail of program output + solver log
    error: str | None = None  # exception type, message and program.py traceback lines
    sandbox: str = ""  # how the program was isolated

    @property
    def ok(self) -> bool:
        """True when the solver proved optimality."""
        return self.status is SolveStatus.OPTIMAL
