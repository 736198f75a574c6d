"""The solvers, run from a model file on the trusted side: HiGHS and SCIP.

Both run the same way: one thread, the same time limit and relative MIP gap, their log on
stdout (the solve process sends it to its log file), the answer read from the solver's own
status and solution. ``proof`` is ``global`` only when the solver says optimal (within the
relative gap for problems with integers or nonconvexities), ``feasible`` for a plan found
before a limit stopped it, ``none`` otherwise. No solver here is a local NLP solver, so
``local`` is never produced.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

_SCIP_COLUMN = re.compile(r"^[a-z](\d+)$")  # SCIP names NL columns x<j> / i<j> / b<j>
_HIGHS_STATUS = {
    "kOptimal": "optimal", "kInfeasible": "infeasible", "kUnbounded": "unbounded",
    "kUnboundedOrInfeasible": "infeasible_or_unbounded", "kModelEmpty": "optimal",
    "kMemoryLimit": "memory_limit",
}
_HIGHS_LIMITS = {"kTimeLimit", "kIterationLimit", "kInterrupt", "kHighsInterrupt", "kSolutionLimit",
                 "kObjectiveBound", "kObjectiveTarget"}
_SCIP_STATUS = {
    "optimal": "optimal", "gaplimit": "optimal", "infeasible": "infeasible", "unbounded": "unbounded",
    "inforunbd": "infeasible_or_unbounded", "memlimit": "memory_limit",
}
_SCIP_LIMITS = {"timelimit", "nodelimit", "totalnodelimit", "stallnodelimit", "sollimit", "bestsollimit",
                "restartlimit", "userinterrupt", "primallimit", "duallimit"}


@dataclass
class Outcome:
    """What a solver said about a model file."""

    solver: str
    status: str  # a SolveStatus value
    termination: str  # the solver's own status text
    objective: float | None = None
    values: list[float] | None = None  # per file column
    gap: float | None = None
    proof: str = "none"
    solve_time_s: float = 0.0
    error: str | None = None
    lp: dict[str, list[float]] = field(default_factory=dict)  # HiGHS LPs: row_dual, col_dual, row_value


def highs_available() -> bool:
    """True when highspy can be imported and used."""
    try:
        import highspy

        highspy.Highs()
        return True
    except Exception:  # noqa: BLE001 - any import/setup problem means "not available"
        return False


def scip_available() -> bool:
    """True when pyscipopt can be imported and used."""
    try:
        import pyscipopt

        pyscipopt.Model().freeProb()
        return True
    except Exception:  # noqa: BLE001 - any import/setup problem means "not available"
        return False


def highs_read(path: str, *, quiet: bool = False) -> Any:
    """A ``highspy.Highs`` holding the LP/MPS file at ``path``; raises ``ValueError`` if unreadable."""
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", not quiet)
    h.setOptionValue("threads", 1)
    h.setOptionValue("random_seed", 0)
    if h.readModel(path) == highspy.HighsStatus.kError:
        raise ValueError(f"HiGHS could not read the model file {path.rsplit('/', 1)[-1]!r}")
    return h


def solve_highs(h: Any, time_limit: float, mip_gap: float) -> Outcome:
    """Run HiGHS on the model it holds."""
    import highspy

    h.setOptionValue("time_limit", max(0.01, float(time_limit)))
    h.setOptionValue("mip_rel_gap", float(mip_gap))
    start = time.perf_counter()
    run_status = h.run()
    elapsed = time.perf_counter() - start
    model_status = h.getModelStatus()
    name = model_status.name
    termination = h.modelStatusToString(model_status)
    info = h.getInfo()
    has_plan = int(info.primal_solution_status) == 2  # kSolutionStatusFeasible
    if name in _HIGHS_STATUS:
        status = _HIGHS_STATUS[name]
    elif name in _HIGHS_LIMITS:
        status = "feasible" if has_plan else "time_limit"
    else:
        status = "error"
    out = Outcome("highs", status, termination, solve_time_s=elapsed)
    if status == "error" or (run_status == highspy.HighsStatus.kError and status != "optimal"):
        out.status = "error"
        out.error = f"HiGHS stopped with an error (model status {termination!r}); see log_tail"
        return out
    if status in ("optimal", "feasible") and has_plan:
        solution = h.getSolution()
        out.values = [float(v) for v in solution.col_value]
        out.objective = float(info.objective_function_value)
        out.proof = "global" if status == "optimal" else "feasible"
        if h.getLp().integrality_ is not None and len(h.getLp().integrality_):
            out.gap = float(info.mip_gap) if info.mip_gap < 1e300 else None
        if int(info.dual_solution_status) == 2:
            out.lp = {"row_dual": list(solution.row_dual), "col_dual": list(solution.col_dual),
                      "row_value": list(solution.row_value)}
    elif status in ("optimal", "feasible"):
        out.status = "time_limit" if status == "feasible" else "unknown"
    return out


def solve_scip(path: str, n_columns: int, time_limit: float, mip_gap: float, memory_mb: int) -> Outcome:
    """Run SCIP on the model file at ``path`` (NL, LP or MPS)."""
    try:
        import pyscipopt
    except ImportError:
        return Outcome("scip", "error", "not installed",
                       error="the model needs SCIP (nonlinear, quadratic with integers or nonconvex), "
                             "but pyscipopt is not installed; install pyscipopt or reformulate it as linear")

    model = pyscipopt.Model()
    try:
        model.setParam("limits/time", max(0.01, float(time_limit)))
        model.setParam("limits/gap", float(mip_gap))
        model.setParam("limits/memory", float(memory_mb))
        model.setParam("randomization/randomseedshift", 0)
        model.setParam("parallel/maxnthreads", 1)
        model.setParam("lp/threads", 1)
        try:
            model.readProblem(path)
        except OSError as exc:
            return Outcome("scip", "error", "read error",
                           error=f"SCIP could not read the model file ({exc}): it holds a construct SCIP does not "
                                 "support (log_tail names it; e.g. Expr_if or a comparison inside an expression); "
                                 "model it with binary variables and constraints instead")
        start = time.perf_counter()
        model.optimize()
        elapsed = time.perf_counter() - start
        termination = str(model.getStatus())
        has_plan = model.getNSols() > 0
        status = _SCIP_STATUS.get(termination)
        if status is None:
            status = ("feasible" if has_plan else "time_limit") if termination in _SCIP_LIMITS else "unknown"
        out = Outcome("scip", status, termination, solve_time_s=elapsed)
        if has_plan and status in ("optimal", "feasible", "unbounded"):
            out.values = _scip_values(model, n_columns)
        if status in ("optimal", "feasible") and has_plan:
            out.objective = float(model.getObjVal())
            out.gap = float(model.getGap())
            out.proof = "global" if status == "optimal" else "feasible"
        elif status in ("optimal", "feasible"):
            out.status = "time_limit" if status == "feasible" else "unknown"
        return out
    finally:
        model.freeProb()


def _scip_values(model: Any, n_columns: int) -> list[float]:
    """Values per NL column, by SCIP's column names; a column SCIP does not name stays NaN."""
    solution = model.getBestSol()
    values = [float("nan")] * n_columns
    for var in model.getVars(transformed=False):
        match = _SCIP_COLUMN.match(var.name)
        if match and int(match.group(1)) < n_columns:
            values[int(match.group(1))] = float(model.getSolVal(solution, var))
    return values
