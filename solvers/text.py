"""The model text people read, rendered from the model file (trusted side).

Objective, constraints and variables come from the file; only the names, and the declared
sets and parameters (``data_text``, which the solve never uses), come from the sandbox. Rows
of one constraint (a range written as two rows) are shown as one. Long models are cut after
``MODEL_TEXT_LINES`` entries per part, saying how many were left out.
"""

from __future__ import annotations

from typing import Any

try:
    from solvers import expr
    from solvers.model_file import FileModel, Row, clean
except ImportError:  # inside the sandbox the modules are top-level
    import expr  # type: ignore[no-redef]
    from model_file import FileModel, Row, clean  # type: ignore[no-redef]

MODEL_TEXT_LINES = 60
MODEL_TEXT_CHARS = 6000
DATA_TEXT_LINES = 2 * MODEL_TEXT_LINES + 2


def model_text(model: FileModel, data_text: Any = None) -> str:
    """Sets and parameters (when declared), objective, constraints, variables with domains."""
    def capped(lines: list[str], total: int) -> list[str]:
        return lines + ([f"  ... and {total - len(lines)} more"] if total > len(lines) else [])

    out = _data_lines(data_text)
    out += [f"{model.sense}  {body_text(model, model.objective)}", "subject to"]
    groups = constraint_groups(model)
    shown = [f"  {name}:  {constraint_text(model, rows)}" for name, rows in groups[:MODEL_TEXT_LINES]]
    out += capped(shown, len(groups)) if groups else ["  (no constraints)"]
    out.append("variables")
    out += capped([f"  {model.names[j]}  {domain_text(model, j)}" for j in model.order[:MODEL_TEXT_LINES]],
                  len(model.order))
    text = "\n".join(out)
    return text if len(text) <= MODEL_TEXT_CHARS else text[:MODEL_TEXT_CHARS] + "\n  ... (cut)"


def _data_lines(data_text: Any) -> list[str]:
    if not isinstance(data_text, list):
        return []
    return [clean(line) for line in data_text[:DATA_TEXT_LINES] if isinstance(line, str)]


def constraint_groups(model: FileModel) -> list[tuple[str, list[int]]]:
    """Rows by the constraint they come from, in the program's declaration order (else the file's)."""
    names = model.row_names or [r.symbol for r in model.rows]
    groups: dict[str, list[int]] = {}
    for i in model.row_order or range(len(model.rows)):
        groups.setdefault(names[i], []).append(i)
    return list(groups.items())


def body_node(model: FileModel, row: Row) -> Any:
    """The row's body as one expression: nonlinear part, linear terms (in declaration order),
    quadratic terms, constant (constant columns folded into it)."""
    constant = row.constant + sum(c * model.columns[j].lb for j, c in row.linear if j in model.hidden)
    rank = {j: k for k, j in enumerate(model.order)}
    linear = sorted(((j, c) for j, c in row.linear if j not in model.hidden),
                    key=lambda term: rank.get(term[0], len(rank) + term[0]))
    tail = [row.expr] if row.expr is not None else []
    node = expr.linear_sum(linear, tail)
    parts = [node] if node != ("n", 0.0) else []
    parts += [_quad_node(i, j, c) for i, j, c in row.quad]
    if constant:
        parts.append(("n", constant))
    if not parts:
        return ("n", 0.0)
    return parts[0] if len(parts) == 1 else ("+", *parts)


def _quad_node(i: int, j: int, c: float) -> Any:
    term = ("sq", ("v", i)) if i == j else ("*", ("v", i), ("v", j))
    return term if c == 1 else ("neg", term) if c == -1 else ("*", ("n", c), term)


def body_text(model: FileModel, row: Row) -> str:
    return expr.render(body_node(model, row), _names(model), model.defined)


def constraint_text(model: FileModel, rows: list[int]) -> str:
    """``body <= ub``, ``body >= lb``, ``lb <= body <= ub`` or ``body == value``."""
    first = model.rows[rows[0]]
    lb = max(model.rows[i].lb for i in rows)
    ub = min(model.rows[i].ub for i in rows)
    body = body_text(model, first)
    if lb == ub:
        return f"{body} == {expr.number(ub)}"
    if lb > float("-inf") and ub < float("inf"):
        return f"{expr.number(lb)} <= {body} <= {expr.number(ub)}"
    if ub < float("inf"):
        return f"{body} <= {expr.number(ub)}"
    if lb > float("-inf"):
        return f"{body} >= {expr.number(lb)}"
    return f"{body}  (free)"


def domain_text(model: FileModel, j: int) -> str:
    column = model.columns[j]
    lb, ub = column.lb, column.ub
    if column.integer and lb == 0 and ub == 1:
        return "binary"
    if lb > float("-inf") and ub < float("inf"):
        bounds = f"in [{expr.number(lb)}, {expr.number(ub)}]"
    elif lb > float("-inf"):
        bounds = f">= {expr.number(lb)}"
    elif ub < float("inf"):
        bounds = f"<= {expr.number(ub)}"
    else:
        bounds = "free"
    return f"{bounds}, {'integer' if column.integer else 'continuous'}"


def bounds_conflict_text(model: FileModel, j: int) -> str:
    name, column = model.names[j], model.columns[j]
    return f"{name} >= {expr.number(column.lb)} and {name} <= {expr.number(column.ub)}"


def _names(model: FileModel) -> list[str]:
    return model.names or [c.symbol for c in model.columns]
