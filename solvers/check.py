"""Check a solver's plan against the model file it solved (trusted side).

Every row must hold, every column stay in its bounds and integer columns be integral, and the
objective recomputed from the plan must match the solver's. A violation counts when it exceeds
``TOLERANCE`` times the scale of what is compared: ``max(1, |bound|, sum of |terms|)`` for a
row, ``max(1, |bound|)`` for a bound, ``max(1, |objective|, sum of |terms|)`` for the
objective; integrality allows ``INTEGRALITY_TOLERANCE``. A plan that cannot be evaluated (a
missing value, a math error) fails.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

try:
    from solvers import expr
    from solvers.model_file import FileModel, Row
except ImportError:  # inside the sandbox the modules are top-level
    import expr  # type: ignore[no-redef]
    from model_file import FileModel, Row  # type: ignore[no-redef]

TOLERANCE = 1e-6
OBJECTIVE_DIFFERS = "objective (solver's value differs)"
INTEGRALITY_TOLERANCE = 1e-5


def check_plan(model: FileModel, x: Sequence[float], objective: float | None) -> dict[str, Any]:
    """A ``PlanCheck`` as a dict: passed, max_violation (scaled), worst, objective (recomputed), tolerance."""
    worst: tuple[float, str] = (0.0, "")

    def note(violation: float, where: str) -> None:
        nonlocal worst
        if violation > worst[0] or math.isnan(violation):
            worst = (violation if not math.isnan(violation) else math.inf, where)

    names = model.names or [c.symbol for c in model.columns]
    if len(x) != len(model.columns) or not all(math.isfinite(v) for v in x):
        missing = next((names[j] for j, v in enumerate(x) if not math.isfinite(v)), "the plan")
        return _result(False, math.inf, f"no finite value for {missing}", None)
    for j, column in enumerate(model.columns):
        value = x[j]
        note(max(column.lb - value, 0.0) / max(1.0, abs(column.lb)) if column.lb > -math.inf else 0.0,
             f"lower bound of {names[j]}")
        note(max(value - column.ub, 0.0) / max(1.0, abs(column.ub)) if column.ub < math.inf else 0.0,
             f"upper bound of {names[j]}")
        if column.integer and abs(value - round(value)) > INTEGRALITY_TOLERANCE:
            note(max(abs(value - round(value)), 2 * TOLERANCE), f"integrality of {names[j]}")
    row_names = model.row_names or [r.symbol for r in model.rows]
    for i, row in enumerate(model.rows):
        try:
            activity, scale = _activity(model, row, x)
        except (ArithmeticError, ValueError) as exc:
            return _result(False, math.inf, f"constraint {row_names[i]} (cannot evaluate: {exc})", None)
        for bound, violation in ((row.lb, row.lb - activity), (row.ub, activity - row.ub)):
            if math.isfinite(bound):
                note(max(violation, 0.0) / max(scale, abs(bound)), f"constraint {row_names[i]}")
    try:
        recomputed, scale = _activity(model, model.objective, x)
    except (ArithmeticError, ValueError) as exc:
        return _result(False, math.inf, f"objective (cannot evaluate: {exc})", None)
    if objective is not None:
        note(abs(recomputed - objective) / max(scale, abs(objective)), OBJECTIVE_DIFFERS)
    return _result(worst[0] <= TOLERANCE, worst[0], worst[1] or None, recomputed)


def _activity(model: FileModel, row: Row, x: Sequence[float]) -> tuple[float, float]:
    """The row's body at ``x`` and its scale (1 or more: the sum of the absolute terms)."""
    terms = [c * x[j] for j, c in row.linear]
    terms += [c * x[i] * x[j] for i, j, c in row.quad]
    if row.expr is not None:
        terms.append(expr.evaluate(row.expr, x, model.defined))
    terms.append(row.constant)
    value = math.fsum(terms)
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value, max(1.0, math.fsum(abs(t) for t in terms))


def _result(passed: bool, violation: float, worst: str | None, objective: float | None) -> dict[str, Any]:
    return {"passed": passed, "max_violation": violation if math.isfinite(violation) else 1e308,
            "worst": worst, "objective": objective, "tolerance": TOLERANCE}
