"""The trusted solve: from the model files the sandbox exported to a checked answer.

Runs in a process forked from the worker, which never imports or executes the program; every
process of the program is gone before it starts. It reads the model file (never a result, a
status or a plan the program wrote), picks the solver from what the file holds, solves, checks
the solver's plan against the file, and renders the model text from the file.

Solver choice: an LP file that is linear (LP, MILP), or a quadratic objective without
integers that is convex for its sense, goes to HiGHS; everything else goes to SCIP with the NL
file: nonlinear, nonconvex quadratic, quadratic with integers, quadratic constraints, and a QP
HiGHS stops on with an error.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

try:
    from solvers import backends, diagnose
    from solvers.check import OBJECTIVE_DIFFERS, check_plan
    from solvers.model_file import (
        FileModel,
        attach_names,
        convex_quadratic,
        from_highs,
        model_class,
        objective_is_constant,
    )
    from solvers.nl import NLError, read_nl
    from solvers.text import constraint_groups, model_text
except ImportError:  # inside the sandbox the modules are top-level
    import backends  # type: ignore[no-redef]
    import diagnose  # type: ignore[no-redef]
    from check import OBJECTIVE_DIFFERS, check_plan  # type: ignore[no-redef]
    from model_file import FileModel, attach_names, convex_quadratic, from_highs, model_class, objective_is_constant  # type: ignore[no-redef]
    from nl import NLError, read_nl  # type: ignore[no-redef]
    from text import constraint_groups, model_text  # type: ignore[no-redef]

MAX_ENTRIES = 5000  # cap on variables / duals / slacks / reduced costs returned
DIAGNOSE_BUDGET_S = 5.0  # conflict / unbounded search, at most (and a fifth of the time limit)
FORMATS = ("lp", "nl")


def solve(export: dict[str, Any], paths: dict[str, str], time_limit: float, limits: dict[str, Any],
          deadline: float) -> dict[str, Any]:
    """SolveResult fields for the model files at ``paths`` (``{"lp": ..., "nl": ...}``).

    ``export`` is what the sandbox said besides the files: symbol maps, data text, stage times;
    it names things and never decides a number. ``deadline`` (monotonic) bounds everything.
    """
    stage_ms = _stage_ms(export.get("stage_ms"))
    raw_symbols = export.get("symbols")
    symbols: dict[str, Any] = raw_symbols if isinstance(raw_symbols, dict) else {}
    start = time.perf_counter()
    try:
        choice = _choose(paths, symbols, stage_ms)
    except (ValueError, OSError, NLError, KeyError, IndexError) as exc:
        return {"status": "error", "error": f"the exported model file could not be read: {exc}", "stage_ms": stage_ms}
    choosing = (time.perf_counter() - start) * 1000 - stage_ms.get("read", 0.0)  # routing: deciding, not reading
    stage_ms["route"] = stage_ms.get("route", 0.0) + choosing
    if isinstance(choice, str):
        return {"status": "error", "error": choice, "stage_ms": stage_ms}
    solver, model, h, klass = choice
    budget = max(0.05, min(time_limit, deadline - time.monotonic() - 0.1))
    start = time.perf_counter()
    if solver == "highs":
        outcome = backends.solve_highs(h, budget, float(limits["mip_gap"]))
        if outcome.status == "error" and model.quadratic and "nl" in paths:  # e.g. HiGHS found it nonconvex
            print(f"HiGHS could not solve the QP ({outcome.termination}); solving it with SCIP", flush=True)
            solver, model, h = "scip", _read_nl(paths["nl"], symbols, stage_ms), None
            budget = max(0.05, min(time_limit, deadline - time.monotonic() - 0.1))
    if solver == "scip":
        outcome = backends.solve_scip(paths["nl"], len(model.columns), budget, float(limits["mip_gap"]),
                                      int(limits["memory_mb"]))
    stage_ms["solve"] = (time.perf_counter() - start) * 1000
    out: dict[str, Any] = {
        "status": outcome.status, "solver": outcome.solver, "termination_condition": outcome.termination,
        "sense": model.sense, "is_mip": model.is_mip, "model_class": klass, "solve_time_s": outcome.solve_time_s,
        "model_text": model_text(model, export.get("data_text")), "proof": "none", "stage_ms": stage_ms,
    }
    if outcome.error:
        out["error"] = outcome.error
    if outcome.status in ("optimal", "feasible"):
        _report_plan(out, model, outcome, stage_ms)
    diagnose_budget = min(DIAGNOSE_BUDGET_S, time_limit / 5, deadline - time.monotonic() - 0.1)
    start = time.perf_counter()
    if out["status"] in ("infeasible", "infeasible_or_unbounded"):
        out.update(diagnose.conflict(model, h, out["status"], diagnose_budget) if h is not None
                   else diagnose.crossed_bounds(model))
    if out["status"] == "unbounded":
        out.update(diagnose.unbounded(model, h, diagnose_budget) if h is not None
                   else diagnose.grown(model, outcome.values, diagnose.UNBOUNDED_BOX))
    if out["status"] in ("infeasible", "infeasible_or_unbounded", "unbounded"):
        stage_ms["diagnose"] = (time.perf_counter() - start) * 1000
    return out


def _choose(paths: dict[str, str], symbols: dict[str, Any],
            stage_ms: dict[str, float]) -> tuple[str, FileModel, Any, str] | str:
    """(solver, model, highs object or None, model class), or why nothing can be solved."""
    if "lp" in paths:
        start = time.perf_counter()
        h = backends.highs_read(paths["lp"])
        model = _named(from_highs(h), symbols.get("lp"))
        stage_ms["read"] = (time.perf_counter() - start) * 1000
        klass = model_class(model)
        if not model.quadratic:
            return "highs", model, h, klass
        convex = None if model.is_mip else convex_quadratic(model)
        if convex:
            return "highs", model, h, klass
        if "nl" not in paths:
            return "the quadratic objective needs SCIP (integer or nonconvex), but the sandbox exported no NL file"
        klass = "miqp" if model.is_mip else "qp" if convex is None else "nonconvex_qp"
        return "scip", _read_nl(paths["nl"], symbols, stage_ms), None, klass
    if "nl" in paths:
        model = _read_nl(paths["nl"], symbols, stage_ms)
        return "scip", model, None, model_class(model)
    return "the sandbox exported no model file"


def _read_nl(path: str, symbols: dict[str, Any], stage_ms: dict[str, float]) -> FileModel:
    start = time.perf_counter()
    model = _named(read_nl(path), symbols.get("nl"))
    stage_ms["read"] = stage_ms.get("read", 0.0) + (time.perf_counter() - start) * 1000
    return model


def _named(model: FileModel, symbols: Any) -> FileModel:
    attach_names(model, symbols)
    return model


def _report_plan(out: dict[str, Any], model: FileModel, outcome: Any, stage_ms: dict[str, float]) -> None:
    """Check the solver's plan on the file; report it, or say why it cannot be trusted."""
    start = time.perf_counter()
    values = outcome.values or []
    check = check_plan(model, values, outcome.objective)
    objective = outcome.objective
    if not check["passed"] and outcome.status == "feasible" and check["worst"] == OBJECTIVE_DIFFERS:
        # a plan stopped at a limit, every row and bound holding: a solver that reformulates a
        # nonlinear objective (SCIP's objective variable) may report a value its incumbent does
        # not reach exactly; the plan's own value, recomputed on the file, is its objective
        check = check_plan(model, values, None)
        objective = check["objective"]
    stage_ms["check"] = (time.perf_counter() - start) * 1000
    out["check"] = check
    out["gap"] = outcome.gap
    out["variables"], out["variables_truncated"] = _named_values(
        (model.names[j], values[j]) for j in model.order if j < len(values))
    if not check["passed"]:
        out["status"] = "check_failed"
        out["error"] = (f"the {outcome.solver} plan fails the check against the model file: {check['worst']} "
                        f"(scaled violation {check['max_violation']:.3g}, tolerance {check['tolerance']:g})")
        return
    out["objective"] = objective
    if objective_is_constant(model):
        out["status"] = "constant_objective"
        out["error"] = (f"the objective depends on no decision variable: it is the constant "
                        f"{check['objective']:g} for every plan, so no plan is better than another "
                        "(an objective term is probably missing)")
        return
    out["proof"] = outcome.proof
    if outcome.status == "optimal" and outcome.lp and not model.is_mip and not model.quadratic:
        out.update(_lp_sensitivity(model, outcome.lp))


def _lp_sensitivity(model: FileModel, lp: dict[str, list[float]]) -> dict[str, Any]:
    """Duals and slacks per constraint (the rows of a range summed / the nearer bound), reduced costs."""
    duals, slacks = [], []
    for name, rows in constraint_groups(model):
        duals.append((name, math.fsum(lp["row_dual"][i] for i in rows)))
        gaps = [gap for i in rows
                for gap in (model.rows[i].ub - lp["row_value"][i], lp["row_value"][i] - model.rows[i].lb)
                if math.isfinite(gap)]
        if gaps:
            slacks.append((name, min(gaps)))
    reduced = [(model.names[j], lp["col_dual"][j]) for j in model.order]
    return {"duals": _named_values(duals)[0], "slacks": _named_values(slacks)[0],
            "reduced_costs": _named_values(reduced)[0]}


def _named_values(pairs: Any) -> tuple[dict[str, float], bool]:
    values: dict[str, float] = {}
    for name, value in pairs:
        if len(values) >= MAX_ENTRIES:
            return values, True
        number = float(value)
        if math.isfinite(number):
            values[str(name)] = number
    return values, False


def _stage_ms(value: Any) -> dict[str, float]:
    """The sandbox's stage times (build, route, export), kept only as plain numbers."""
    if not isinstance(value, dict):
        return {}
    return {k: float(v) for k, v in value.items() if k in ("build", "route", "export")
            and isinstance(v, (int, float)) and math.isfinite(v) and v >= 0}


def model_paths(directory: str, formats: Any) -> dict[str, str]:
    """Paths of the model files in ``directory`` for the formats the sandbox named."""
    names = formats if isinstance(formats, list) else []
    return {fmt: os.path.join(directory, f"model.{fmt}") for fmt in FORMATS if fmt in names}
