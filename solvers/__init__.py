"""Sandboxed execution of model-written Pyomo programs, solved with HiGHS or SCIP.

A leaf package: it never imports ``alphaopt`` or ``library``. Pyomo, highspy and
pyscipopt are imported only inside the sandboxed workers (and, lazily, by the
availability probes). The program only builds its model, which leaves its process as
a model file; a process that never runs the program solves that file, checks the plan
against it and renders the model text from it.

    with SolverRunner(Limits(wall_time_s=10)) as runner:
        result = runner.run(program_source)
        if result.ok:
            print(result.objective, result.variables, result.solver, result.proof)
"""

from solvers.limits import Limits
from solvers.result import PlanCheck, Proof, SolveResult, SolverHarnessError, SolveStatus
from solvers.runner import SolverRunner, highs_available, run_program, scip_available
from solvers.sandbox import resolve_sandbox

__all__ = [
    "Limits",
    "PlanCheck",
    "Proof",
    "SolveResult",
    "SolveStatus",
    "SolverHarnessError",
    "SolverRunner",
    "highs_available",
    "resolve_sandbox",
    "run_program",
    "scip_available",
]
