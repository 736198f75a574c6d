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
    CONSTANT_OBJECTIVE = "constant_objective"  # feasible, but the objective depends on no variable
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    INFEASIBLE_OR_UNBOUNDED = "infeasible_or_unbounded"
    TIME_LIMIT = "time_limit"  # solver limit hit without an incumbent
    CHECK_FAILED = "check_failed"  # the solver's plan does not satisfy the model file
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


class Proof(StrEnum):
    """What the solver proved about the reported plan."""

    GLOBAL = "global"  # optimal (within Limits.mip_gap where integers or nonconvexity are involved)
    LOCAL = "local"  # a local optimum only (a local NLP solver; none is used today)
    FEASIBLE = "feasible"  # a feasible plan, found before a time or other limit stopped the solver
    NONE = "none"  # no plan, or nothing proved about it


class PlanCheck(BaseModel):
    """The reported plan checked against the model file the solver read.

    Rows, bounds and integrality must hold within ``tolerance`` (scaled by the size of what is
    compared), and the objective recomputed from the plan must match the solver's.
    """

    passed: bool
    max_violation: float = 0.0  # largest scaled violation found
    worst: str | None = None  # where it is: "constraint c1", "upper bound of x", "objective ..."
    objective: float | None = None  # recomputed from the plan
    tolerance: float = 1e-6


class ConflictConstraint(BaseModel):
    """A constraint in an infeasible model's conflict."""

    name: str
    text: str  # as built: "body <= bound"


class SolveResult(BaseModel):
    """Everything the agent needs to know about one run.

    Everything about the solution comes from a solver that read the model file in a process
    that never ran the program; the program only built the model.
    """

    status: SolveStatus
    termination_condition: str | None = None  # the solver's own status text
    objective: float | None = None  # optimal / feasible, and the constant of constant_objective
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
    model_text: str = ""  # the model file the solver read, in algebraic form (objective, constraints, variables)
    log_tail: str = ""  # tail of program output + solver log
    error: str | None = None  # exception type, message and program.py traceback lines
    sandbox: str = ""  # how the program was isolated (sandbox and isolation)
    solver: str | None = None  # "highs" or "scip": the solver that answered
    proof: Proof = Proof.NONE
    gap: float | None = None  # relative gap the solver reported for the plan (problems with integers or SCIP)
    check: PlanCheck | None = None  # the plan checked against the model file
    model_class: str | None = None  # lp, milp, qp, nonconvex_qp, miqp, qcqp, nlp, ... (with mi prefix)
    isolation: str = ""  # caps for the run as a whole (cgroup), or why there are none
    stage_ms: dict[str, float] = Field(default_factory=dict)  # build, route, export, read, solve, check, diagnose

    @property
    def ok(self) -> bool:
        """True when the solver proved optimality."""
        return self.status is SolveStatus.OPTIMAL
