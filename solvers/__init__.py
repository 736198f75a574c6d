"""Sandboxed execution of model-written Pyomo programs, solved with HiGHS.

A leaf package: it never imports ``alphaopt`` or ``library``. Pyomo and highspy
are imported only inside the sandboxed workers (and, lazily, by
``highs_available``).

    with SolverRunner(Limits(wall_time_s=10)) as runner:
        result = runner.run(program_source)
        if result.ok:
            print(result.objective, result.variables)
"""

from .limits import Limits
from .result import SolverHarnessError, SolveResult, SolveStatus
from .runner import SolverRunner, highs_available, run_program
from .sandbox import resolve_sandbox

__all__ = [
    "Limits",
    "SolveResult",
    "SolveStatus",
    "SolverHarnessError",
    "SolverRunner",
    "highs_available",
    "resolve_sandbox",
    "run_program",
]
