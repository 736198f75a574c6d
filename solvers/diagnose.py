"""Why a model has no optimum, worked out on the model file with HiGHS (trusted side).

``conflict``: for a model the solver calls infeasible, a smallest set of constraints that
cannot hold together (an irreducible infeasible subset). A deletion filter on the feasibility
problem (same rows, bounds and integrality, zero objective): a constraint is dropped for good
when the rest stays infeasible without it; the rows of one constraint go together. A column
whose bounds cross is the conflict by itself. A model feasible without its objective was
unbounded, so ``infeasible_or_unbounded`` is resolved either way.

``unbounded``: every column is boxed in ``[-UNBOUNDED_BOX, UNBOUNDED_BOX]`` for one more solve;
those that end at the box are the ones the model lets grow forever.

Both are best effort within a time budget: past it, or on any solver failure, they give nothing.
"""

from __future__ import annotations

import math
import time
from typing import Any

try:
    from solvers.model_file import FileModel
    from solvers.text import bounds_conflict_text, constraint_groups, constraint_text
except ImportError:  # inside the sandbox the modules are top-level
    from model_file import FileModel  # type: ignore[no-redef]
    from text import bounds_conflict_text, constraint_groups, constraint_text  # type: ignore[no-redef]

CONFLICT_MAX_CONSTRAINTS = 200  # an infeasible model with more constraints gets no conflict search
CONFLICT_MAX_SHOWN = 8  # constraints of a conflict (or unbounded variables) reported
UNBOUNDED_BOX = 1e9
MAX_COLUMNS = 5000


def crossed_bounds(model: FileModel) -> dict[str, Any]:
    """A column whose lower bound exceeds its upper bound, as a one-entry conflict (or {})."""
    for j, column in enumerate(model.columns):
        if column.lb > column.ub:
            return {"status": "infeasible",
                    "conflict": [{"name": model.names[j], "text": bounds_conflict_text(model, j)}]}
    return {}


def conflict(model: FileModel, h: Any, status: str, budget_s: float) -> dict[str, Any]:
    """``{"status", "conflict"}`` for an infeasible LP/MILP held by ``h``; see the module docstring."""
    import highspy

    crossed = crossed_bounds(model)
    if crossed:
        return crossed
    groups = constraint_groups(model)
    if not groups or len(groups) > CONFLICT_MAX_CONSTRAINTS:
        return {}
    deadline = time.perf_counter() + budget_s
    feasibility = _quiet_copy(h, zero_objective=True)

    def infeasible() -> bool:
        left = deadline - time.perf_counter()
        if left <= 0:
            raise TimeoutError("conflict search budget spent")
        feasibility.setOptionValue("time_limit", left)
        feasibility.run()
        return feasibility.getModelStatus() == highspy.HighsModelStatus.kInfeasible

    resolved: dict[str, Any] = {}
    try:
        if not infeasible():
            return {"status": "unbounded"} if status == "infeasible_or_unbounded" else {}
        resolved = {"status": "infeasible"}
        kept = []
        for name, rows in groups:
            saved = [(model.rows[i].lb, model.rows[i].ub) for i in rows]
            for i in rows:
                feasibility.changeRowBounds(i, -math.inf, math.inf)
            if not infeasible():
                for i, (lb, ub) in zip(rows, saved, strict=True):
                    feasibility.changeRowBounds(i, lb, ub)
                kept.append((name, rows))
        found = [{"name": name, "text": constraint_text(model, rows)} for name, rows in kept]
        return {**resolved, "conflict": found[:CONFLICT_MAX_SHOWN]}
    except Exception:  # noqa: BLE001 - best effort: the status stands without a conflict
        return resolved


def unbounded(model: FileModel, h: Any, budget_s: float) -> dict[str, Any]:
    """``{"unbounded": [names]}`` for an unbounded model held by ``h``; see the module docstring."""
    if len(model.columns) > MAX_COLUMNS or budget_s <= 0:
        return {}
    try:
        boxed = _quiet_copy(h, zero_objective=False)
        n = len(model.columns)
        lower = [max(c.lb, -UNBOUNDED_BOX) for c in model.columns]
        upper = [min(c.ub, UNBOUNDED_BOX) for c in model.columns]
        boxed.changeColsBounds(n, list(range(n)), lower, upper)
        boxed.setOptionValue("time_limit", budget_s)
        boxed.run()
        if int(boxed.getInfo().primal_solution_status) != 2:
            return {}
        return grown(model, list(boxed.getSolution().col_value), UNBOUNDED_BOX / 2)
    except Exception:  # noqa: BLE001 - best effort: the status stands without it
        return {}


def grown(model: FileModel, values: list[float] | None, threshold: float) -> dict[str, Any]:
    """Columns of a plan at or beyond ``threshold`` in size, as ``{"unbounded": [names]}`` (or {})."""
    if not values:
        return {}
    names = [model.names[j] for j in model.order if j < len(values) and abs(values[j]) >= threshold]
    return {"unbounded": names[:CONFLICT_MAX_SHOWN]} if names else {}


def _quiet_copy(h: Any, *, zero_objective: bool) -> Any:
    import highspy

    copy = highspy.Highs()
    copy.setOptionValue("output_flag", False)
    copy.setOptionValue("threads", 1)
    copy.setOptionValue("random_seed", 0)
    if zero_objective:
        lp = h.getLp()
        lp.col_cost_ = [0.0] * int(lp.num_col_)
        lp.offset_ = 0.0
        copy.passModel(lp)
    else:
        copy.passModel(h.getModel())
    return copy
