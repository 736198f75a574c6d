"""Sandbox side: execute one program, solve its model with HiGHS, return plain data.

Runs inside the forked child of the worker (see ``worker.py``), already under
rlimits and inside the sandbox. Imported both as ``solvers.harness`` and, inside
the sandbox, as the top-level module ``harness``; it uses only the standard
library and Pyomo/HiGHS, never the rest of the project.
"""

from __future__ import annotations

import errno
import math
import os
import sys
import time
import traceback
import types
from typing import Any

MAX_ENTRIES = 5000  # cap on variables / duals / slacks / reduced costs returned
CONFLICT_MAX_CONSTRAINTS = 200  # an infeasible model larger than this gets no conflict search
CONFLICT_BUDGET_S = 5.0  # time one conflict search may spend, at most (and a fifth of the solve's limit)
CONFLICT_MAX_SHOWN = 8  # constraints of a conflict (or unbounded variables) reported
UNBOUNDED_BOX = 1e9  # an unbounded model is solved once more inside this box to see what grows
MODEL_TEXT_LINES = 60  # cap on constraints and variables shown in the model text
MODEL_TEXT_CHARS = 6000
PROGRAM_NAME = "program.py"
_HINT_NONLINEAR = (
    "HiGHS solves only linear (and mixed-integer linear) models, plus quadratic objectives "
    "without integers; reformulate nonlinear terms (products of variables, exp, log, abs, "
    "min/max, division by variables) as linear constraints."
)


def preload(warm: bool) -> None:
    """Import Pyomo and the HiGHS interface; with ``warm`` also run one tiny solve.

    The warm-up solve loads the lazily imported parts (model translation, highspy
    internals) so that forked children start solving immediately. HiGHS is always
    run with one thread, so no solver threads exist in the process that forks.
    """
    import pyomo.environ as pyo
    from pyomo.contrib.solver.common.factory import SolverFactory

    solver = SolverFactory("highs")
    if warm and solver.available():
        m = pyo.ConcreteModel()
        m.x = pyo.Var(bounds=(0, 1))
        m.c = pyo.Constraint(expr=m.x >= 0.5)
        m.o = pyo.Objective(expr=m.x)
        solver.solve(m, load_solutions=False, raise_exception_on_nonoptimal_result=False, threads=1)


def highs_available() -> bool:
    """True when Pyomo's HiGHS interface can be used in this process."""
    try:
        import pyomo.environ  # noqa: F401 - registers the solver plugins
        from pyomo.contrib.solver.common.factory import SolverFactory

        return bool(SolverFactory("highs").available())
    except Exception:  # noqa: BLE001 - any import/setup problem means "not available"
        return False


def run(program_path: str, time_limit: float | None) -> dict[str, Any]:
    """Execute the program file and solve; every failure becomes a status in the dict."""
    owner = os.getpid()
    try:
        return _run(program_path, time_limit, owner)
    except BaseException as exc:  # noqa: BLE001 - the program is untrusted, report everything
        _exit_if_not_owner(owner)
        return _exception_result(exc, program_path)


def _run(program_path: str, time_limit: float | None, owner: int) -> dict[str, Any]:
    import pyomo.environ as pyo

    with open(program_path, encoding="utf-8") as f:
        source = f.read()
    module = types.ModuleType("program")  # a real module, so dataclasses/pickle/typing work
    module.__file__ = program_path
    sys.modules["program"] = module
    exec(compile(source, program_path, "exec"), module.__dict__)  # noqa: S102 - sandboxed by design
    _exit_if_not_owner(owner)
    build = getattr(module, "build_model", None)
    if not callable(build):
        return _invalid("the program does not define a function build_model()")
    model = build()
    _exit_if_not_owner(owner)
    if isinstance(model, pyo.AbstractModel):
        model = model.create_instance()
    if not isinstance(model, pyo.Block) or not getattr(model, "is_constructed", lambda: True)():
        return _invalid(f"build_model() returned {type(model).__name__}, expected a Pyomo ConcreteModel")
    objectives = list(model.component_data_objects(pyo.Objective, active=True, descend_into=True))
    if len(objectives) != 1:
        names = ", ".join(o.name for o in objectives[:5])
        return _invalid(
            f"the model has {len(objectives)} active objectives{f' ({names})' if names else ''}; "
            "exactly one is required"
        )
    variables = list(model.component_data_objects(pyo.Var, active=True, descend_into=True))
    if not variables:
        return _invalid("the model has no variables")
    text = model_text(model, objectives[0], variables)
    return {"model_text": text, **_solve(model, objectives[0], variables, time_limit, owner)}


def model_text(model: Any, objective: Any, variables: list[Any]) -> str:
    """The model as built, in algebraic form: sets and parameters (when the program declared
    any), objective, constraints, variables with domains.

    This is what the solver receives, so it is the honest account of the math used. Long
    models are cut after ``MODEL_TEXT_LINES`` entries per part, saying how many were left out.
    """
    import pyomo.environ as pyo

    def capped(lines: list[str], total: int) -> list[str]:
        return lines + ([f"  ... and {total - len(lines)} more"] if total > len(lines) else [])

    try:
        sense = "maximize" if objective.sense == pyo.maximize else "minimize"
        out = _data_text(model)
        out += [f"{sense}  {objective.expr}", "subject to"]
        constraints = list(model.component_data_objects(pyo.Constraint, active=True, descend_into=True))
        shown = [f"  {c.name}:  {_constraint_text(c)}" for c in constraints[:MODEL_TEXT_LINES]]
        out += capped(shown, len(constraints)) if constraints else ["  (no constraints)"]
        out.append("variables")
        out += capped([f"  {v.name}  {_domain_text(v)}" for v in variables[:MODEL_TEXT_LINES]], len(variables))
        text = "\n".join(out)
    except Exception as exc:  # noqa: BLE001 - best effort: never hide the solve behind this
        return f"(model text unavailable: {type(exc).__name__})"
    return text if len(text) <= MODEL_TEXT_CHARS else text[:MODEL_TEXT_CHARS] + "\n  ... (cut)"


def _data_text(model: Any) -> list[str]:
    """Declared Pyomo sets (with members) and parameters (with values), capped like the rest."""
    import pyomo.environ as pyo

    def short(values: list[Any], total: int) -> str:
        shown = ", ".join(str(_number(v) if isinstance(v, (int, float)) else v) for v in values)
        return shown + (f", ... ({total} in all)" if total > len(values) else "")

    out: list[str] = []
    sets = list(model.component_objects((pyo.Set, pyo.RangeSet), descend_into=True))[:MODEL_TEXT_LINES]
    if sets:
        out.append("sets")
        out += [f"  {s.name} = {{{short(list(s)[:20], len(s))}}}" for s in sets]
    params = list(model.component_objects(pyo.Param, descend_into=True))[:MODEL_TEXT_LINES]
    if params:
        out.append("parameters")
        for p in params:
            if p.is_indexed():
                items = list(p.items())
                out.append(f"  {p.name} = {{{short([f'{k}: {_number(pyo.value(v))}' for k, v in items[:20]], len(items))}}}")
            else:
                out.append(f"  {p.name} = {_number(pyo.value(p))}")
    return out


def _constraint_text(con: Any) -> str:
    lower, upper = _number(con.lower), _number(con.upper)
    if con.equality:
        return f"{con.body} == {upper}"
    if lower is not None and upper is not None:
        return f"{lower} <= {con.body} <= {upper}"
    return f"{con.body} <= {upper}" if upper is not None else f"{con.body} >= {lower}"


def _number(value: Any) -> Any:
    """A bound as short text (``4.5``, ``10``), or None; non-numeric bounds as they print."""
    if value is None:
        return None
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return value


def _domain_text(var: Any) -> str:
    kind = "binary" if var.is_binary() else "integer" if var.is_integer() else "continuous"
    lb, ub = var.lb, var.ub
    if lb is not None and ub is not None:
        bounds = f"in [{lb:g}, {ub:g}]"
    elif lb is not None:
        bounds = f">= {lb:g}"
    elif ub is not None:
        bounds = f"<= {ub:g}"
    else:
        bounds = "free"
    return f"{bounds}, {kind}" if kind != "binary" else "binary"


def _solve(model: Any, objective: Any, variables: list[Any], time_limit: float | None, owner: int) -> dict[str, Any]:
    import pyomo.environ as pyo
    from pyomo.contrib.solver.common.factory import SolverFactory

    is_mip = any(not v.fixed and (v.is_integer() or v.is_binary()) for v in variables)
    sense = "maximize" if objective.sense == pyo.maximize else "minimize"
    out: dict[str, Any] = {"is_mip": is_mip, "sense": sense}
    options: dict[str, Any] = {"load_solutions": False, "raise_exception_on_nonoptimal_result": False, "threads": 1}
    if time_limit is not None:
        options["time_limit"] = max(0.01, float(time_limit))
    start = time.perf_counter()
    try:
        res = SolverFactory("highs").solve(model, **options)
    except Exception as exc:  # noqa: BLE001 - solver refused the model: show why
        _exit_if_not_owner(owner)
        result = _exception_result(exc, "")
        if type(exc).__name__ == "IncompatibleModelError" or "degree" in str(exc):
            result["error"] += "\n" + _nonlinear_parts(model, objective) + _HINT_NONLINEAR
        return {**out, **result, "solve_time_s": time.perf_counter() - start}
    _exit_if_not_owner(owner)
    out["solve_time_s"] = time.perf_counter() - start
    out["solver_log"] = res.solver_log or ""
    tc = res.termination_condition.name
    out["termination_condition"] = tc
    solution = res.solution_status.name
    has_incumbent = solution in ("optimal", "feasible") and res.incumbent_objective is not None
    status = _map_termination(tc, solution, has_incumbent)
    refusals = [line.strip() for line in out["solver_log"].splitlines() if line.lstrip().startswith("ERROR:")]
    if status == "unknown" and refusals:  # HiGHS refused the model (e.g. a quadratic objective with integers)
        status = "error"
        out["error"] = "HiGHS refused the model: " + " ".join(refusals)[:500]
        if "QP" in out["error"]:
            out["error"] += (f"\nNot linear: objective {objective.name} (quadratic, with integer variables).\n"
                             + _HINT_NONLINEAR)
    elif status == "error":
        out["error"] = f"HiGHS reported a solver error (termination condition {tc}); see log_tail"
    out["status"] = status
    if status in ("infeasible", "infeasible_or_unbounded"):
        out.update(_conflict(model, objective, variables, status, options, owner))
    if out["status"] == "unbounded":
        out.update(_unbounded(model, variables, options, owner))
    if out["status"] not in ("optimal", "feasible"):
        return out
    out["objective"] = _finite(res.incumbent_objective)
    res.solution_loader.load_vars()
    out["variables"], out["variables_truncated"] = _named_values((v.name, v.value) for v in variables)
    if status == "optimal" and not is_mip:
        out.update(_lp_sensitivity(model, res))
    return out


def _conflict(model: Any, objective: Any, variables: list[Any], status: str, options: dict[str, Any],
              owner: int) -> dict[str, Any]:
    """For a model the solver calls infeasible: a smallest set of constraints that cannot hold
    together (an irreducible infeasible subset), as ``{"conflict": [{"name", "text"}, ...]}``.

    A deletion filter on the feasibility problem (the same constraints, variable bounds and
    domains, with a constant objective): a constraint is dropped for good when the rest stays
    infeasible without it. A variable whose own bounds cross (its lower bound, or its domain's,
    above its upper bound) is the conflict by itself. A model that is feasible without its
    objective was unbounded, so an ``infeasible_or_unbounded`` status is resolved either way.
    Best effort: a model with more than ``CONFLICT_MAX_CONSTRAINTS`` constraints, a search past
    its time budget, or any failure, gives no conflict.
    """
    import pyomo.environ as pyo
    from pyomo.contrib.solver.common.factory import SolverFactory

    for var in variables:
        if var.lb is not None and var.ub is not None and var.lb > var.ub:
            return {"status": "infeasible",
                    "conflict": [{"name": var.name, "text": f"{var.name} >= {var.lb:g} and {var.name} <= {var.ub:g}"}]}
    solver = SolverFactory("highs")
    deadline = time.perf_counter() + _extra_budget(options)
    constraints = list(model.component_data_objects(pyo.Constraint, active=True, descend_into=True))
    if not constraints or len(constraints) > CONFLICT_MAX_CONSTRAINTS:
        return {}

    def infeasible() -> bool:
        left = deadline - time.perf_counter()
        if left <= 0:
            raise TimeoutError("conflict search budget spent")
        res = solver.solve(model, **{**options, "time_limit": left})
        _exit_if_not_owner(owner)
        return res.termination_condition.name in ("provenInfeasible", "locallyInfeasible")

    resolved: dict[str, Any] = {}
    objective.deactivate()
    model._alphaopt_zero = pyo.Objective(expr=0.0)
    try:
        if not infeasible():
            return {"status": "unbounded"} if status == "infeasible_or_unbounded" else {}
        resolved = {"status": "infeasible"}
        for con in constraints:
            con.deactivate()
            if not infeasible():
                con.activate()
        conflict = [{"name": c.name, "text": _constraint_text(c)} for c in constraints if c.active]
        return {**resolved, "conflict": conflict[:CONFLICT_MAX_SHOWN]}
    except Exception:  # noqa: BLE001 - best effort: the status stands without a conflict
        return resolved
    finally:
        for con in constraints:
            con.activate()
        model.del_component("_alphaopt_zero")
        objective.activate()


def _unbounded(model: Any, variables: list[Any], options: dict[str, Any], owner: int) -> dict[str, Any]:
    """For an unbounded model: the variables that grow without limit, as ``{"unbounded": [names]}``.

    Every variable is boxed in ``[-UNBOUNDED_BOX, UNBOUNDED_BOX]`` for one more solve; those that
    end at the box are the ones the model lets grow forever. The model stays boxed: nothing
    runs on it after this. Best effort: any failure gives nothing.
    """
    from pyomo.contrib.solver.common.factory import SolverFactory

    if len(variables) > MAX_ENTRIES:
        return {}
    try:
        for v in variables:
            v.setlb(max(v.lb, -UNBOUNDED_BOX) if v.lb is not None else -UNBOUNDED_BOX)
            v.setub(min(v.ub, UNBOUNDED_BOX) if v.ub is not None else UNBOUNDED_BOX)
        res = SolverFactory("highs").solve(model, **{**options, "time_limit": _extra_budget(options)})
        _exit_if_not_owner(owner)
        if res.incumbent_objective is None:
            return {}
        res.solution_loader.load_vars()
        grown = [v.name for v in variables if v.value is not None and abs(v.value) >= UNBOUNDED_BOX / 2]
        return {"unbounded": grown[:CONFLICT_MAX_SHOWN]} if grown else {}
    except Exception:  # noqa: BLE001 - best effort: the status stands without it
        return {}


def _extra_budget(options: dict[str, Any]) -> float:
    """Seconds the solves after the first (conflict, unbounded variables) may take together."""
    return min(CONFLICT_BUDGET_S, float(options.get("time_limit") or 25.0) / 5)


def _nonlinear_parts(model: Any, objective: Any, limit: int = 5) -> str:
    """Name the components HiGHS cannot take (nonlinear constraints, non-quadratic objective)."""
    import pyomo.environ as pyo

    parts = []
    try:
        degree = objective.expr.polynomial_degree()
        if degree is None or degree > 2:
            parts.append(f"objective {objective.name} ({'nonlinear' if degree is None else f'degree {degree}'})")
        for i, con in enumerate(model.component_data_objects(pyo.Constraint, active=True, descend_into=True)):
            if len(parts) >= limit or i > 100_000:
                break
            degree = con.body.polynomial_degree()
            if degree is None or degree > 1:
                parts.append(f"constraint {con.name} ({'nonlinear' if degree is None else f'degree {degree}'})")
    except Exception:  # noqa: BLE001 - best effort only
        return ""
    return f"Not linear: {', '.join(parts)}.\n" if parts else ""


def _map_termination(tc: str, solution: str, has_incumbent: bool) -> str:
    """Map Pyomo's TerminationCondition name to a SolveStatus value."""
    if tc == "convergenceCriteriaSatisfied":
        if solution == "optimal":
            return "optimal"
        return "feasible" if has_incumbent else "unknown"
    if tc in ("maxTimeLimit", "iterationLimit", "objectiveLimit", "interrupted"):
        return "feasible" if has_incumbent else "time_limit"
    if tc in ("provenInfeasible", "locallyInfeasible"):
        return "infeasible"
    if tc == "unbounded":
        return "unbounded"
    if tc == "infeasibleOrUnbounded":
        return "infeasible_or_unbounded"
    if tc in ("error", "licensingProblems"):
        return "error"
    return "unknown"


def _lp_sensitivity(model: Any, res: Any) -> dict[str, Any]:
    import pyomo.environ as pyo

    out: dict[str, Any] = {}
    loader = res.solution_loader
    try:
        out["duals"], _ = _named_values((c.name, d) for c, d in loader.get_duals().items())
    except Exception:  # noqa: BLE001 - no duals available: leave None
        pass
    try:
        out["reduced_costs"], _ = _named_values((v.name, d) for v, d in loader.get_reduced_costs().items())
    except Exception:  # noqa: BLE001 - no reduced costs available: leave None
        pass
    constraints = model.component_data_objects(pyo.Constraint, active=True, descend_into=True)
    try:
        out["slacks"], _ = _named_values((c.name, c.slack()) for c in constraints)
    except Exception:  # noqa: BLE001 - e.g. a constraint over a variable the solver never saw
        pass
    return out


def _named_values(pairs: Any) -> tuple[dict[str, float], bool]:
    values: dict[str, float] = {}
    for name, value in pairs:
        if len(values) >= MAX_ENTRIES:
            return values, True
        number = _finite(value)
        if number is not None:
            values[str(name)] = number
    return values, False


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _invalid(message: str) -> dict[str, Any]:
    return {"status": "invalid_program", "error": f"invalid program: {message}"}


def _exception_result(exc: BaseException, program_path: str) -> dict[str, Any]:
    """Classify an exception and describe it with the program lines it went through."""
    if isinstance(exc, MemoryError):
        return {"status": "memory_limit", "error": "MemoryError: the program exceeded its memory limit"}
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return {"status": "output_limit", "error": f"{type(exc).__name__}: file size limit exceeded ({exc})"}
    if isinstance(exc, OSError) and exc.errno == errno.EAGAIN:  # fork()/thread start under RLIMIT_NPROC
        return {"status": "killed", "error": "process/thread limit reached: " + _describe(exc, program_path)}
    if isinstance(exc, SystemExit):
        return {"status": "error", "error": f"SystemExit: the program called exit({exc.code!r}) instead of returning a model"}
    return {"status": "error", "error": _describe(exc, program_path)}


def _describe(exc: BaseException, program_path: str) -> str:
    """'Type: message' plus the traceback lines inside program.py (or the last frame)."""
    head = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    if program_path:
        head = head.replace(program_path, PROGRAM_NAME)
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if program_path and f.filename == program_path]
    shown = mine or [f for f in frames[-1:] if os.path.basename(f.filename) != "harness.py"]
    lines = [head]
    if shown:
        lines.append("Traceback (program lines):" if mine else "Raised in:")
    for f in shown:
        name = PROGRAM_NAME if f.filename == program_path else os.path.basename(f.filename)
        lines.append(f'  File "{name}", line {f.lineno}, in {f.name}')
        if f.line:
            lines.append(f"    {f.line.strip()}")
    return "\n".join(lines)


def _exit_if_not_owner(owner: int) -> None:
    """A process the program forked must never report a result: end it quietly."""
    if os.getpid() != owner:
        os._exit(0)
