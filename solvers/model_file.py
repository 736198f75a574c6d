"""The model as a model file states it: columns, rows, objective; solver-neutral, trusted side.

A ``FileModel`` is built only from what a solver library parsed (``from_highs``: an LP file
read by HiGHS) or from ``nl.read_nl`` (an NL file). The names shown to people come from the
symbol map the sandbox sent, cleaned of anything but printable text; a name the map lacks is
the file's own symbol. A column the map does not name and the file fixes (``lb == ub``, as
Pyomo's ``ONE_VAR_CONSTANT``) is a constant, not a decision.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

try:
    from solvers import expr
except ImportError:  # inside the sandbox the modules are top-level
    import expr  # type: ignore[no-redef]

INF = math.inf
_ROW_SYMBOL = re.compile(r"^(?:c_[ule]|r_[lu])_(.+)_$")  # Pyomo's LP row names around the symbol
_UNPRINTABLE = re.compile(r"[^\x20-\x7e\u00a0-\uffff]")
MAX_NAME_CHARS = 200
CONVEXITY_MAX_DIM = 1500  # larger Hessians are not checked for convexity (they go to SCIP)


@dataclass
class Column:
    symbol: str
    lb: float
    ub: float
    integer: bool


@dataclass
class Row:
    symbol: str
    linear: list[tuple[int, float]]
    lb: float = -INF
    ub: float = INF
    expr: Any = None  # nonlinear part (an ``expr`` node), or None
    quad: list[tuple[int, int, float]] = field(default_factory=list)  # objective only: c * x_i * x_j
    constant: float = 0.0


@dataclass
class FileModel:
    fmt: str  # "lp" or "nl"
    columns: list[Column]
    rows: list[Row]
    objective: Row
    sense: str  # "minimize" or "maximize"
    defined: dict[int, Any] = field(default_factory=dict)  # NL defined expressions: id -> (linear, node)
    names: list[str] = field(default_factory=list)  # per column, for people
    row_names: list[str] = field(default_factory=list)  # per row (the two rows of a range share one)
    hidden: set[int] = field(default_factory=set)  # constant columns (fixed, not in the symbol map)
    order: list[int] = field(default_factory=list)  # columns in the program's declaration order
    row_order: list[int] = field(default_factory=list)  # rows in the program's declaration order
    objective_name: str = "objective"

    @property
    def is_mip(self) -> bool:
        return any(c.integer for c in self.columns)

    @property
    def quadratic(self) -> bool:
        return bool(self.objective.quad)

    @property
    def nonlinear(self) -> bool:
        return self.objective.expr is not None or any(r.expr is not None for r in self.rows)


def from_highs(h: Any) -> FileModel:
    """The LP (and Hessian) a ``highspy.Highs`` object read from a file."""
    lp = h.getLp()
    n, m = int(lp.num_col_), int(lp.num_row_)
    integrality = list(lp.integrality_) if len(lp.integrality_) else []
    col_names, row_names = list(lp.col_names_), list(lp.row_names_)
    columns = [Column(col_names[j] if j < len(col_names) else f"col{j}", _f(lp.col_lower_[j]), _f(lp.col_upper_[j]),
                      bool(integrality and int(integrality[j]) in (1, 3)))  # kInteger, kSemiInteger
               for j in range(n)]
    matrix = lp.a_matrix_
    starts, index, value = list(matrix.start_), list(matrix.index_), list(matrix.value_)
    row_terms: list[list[tuple[int, float]]] = [[] for _ in range(m)]
    if n and starts:
        if "Rowwise" in str(matrix.format_):
            for i in range(m):
                row_terms[i] = [(index[k], value[k]) for k in range(starts[i], starts[i + 1])]
        else:
            for j in range(n):
                for k in range(starts[j], starts[j + 1]):
                    row_terms[index[k]].append((j, value[k]))
    rows = [Row(row_names[i] if i < len(row_names) else f"row{i}", sorted(row_terms[i]),
                _f(lp.row_lower_[i]), _f(lp.row_upper_[i])) for i in range(m)]
    objective = Row("objective", [(j, float(c)) for j, c in enumerate(lp.col_cost_) if c],
                    constant=float(lp.offset_), quad=_hessian_terms(h.getModel().hessian_))
    sense = "maximize" if "Maximize" in str(lp.sense_) else "minimize"
    return FileModel("lp", columns, rows, objective, sense)


def _hessian_terms(hessian: Any) -> list[tuple[int, int, float]]:
    """``0.5 x'Qx`` as ``c * x_i * x_j`` terms (HiGHS keeps Q's lower triangle by column)."""
    dim = int(hessian.dim_)
    if not dim:
        return []
    starts, index, value = list(hessian.start_), list(hessian.index_), list(hessian.value_)
    terms = []
    for j in range(dim):
        for k in range(starts[j], starts[j + 1]):
            i, q = index[k], float(value[k])
            if q:
                terms.append((j, i, q / 2 if i == j else q))
    return terms


def _f(value: Any) -> float:
    number = float(value)
    return INF if number >= 1e30 else -INF if number <= -1e30 else number


def attach_names(model: FileModel, symbols: Any) -> None:
    """Name columns and rows from the sandbox's symbol map; see the module docstring."""
    symbols = symbols if isinstance(symbols, dict) else {}
    var_names = _pairs(symbols.get("vars"))
    con_names = _pairs(symbols.get("cons"))
    model.names = [var_names.get(c.symbol, c.symbol) for c in model.columns]
    model.row_names = [con_names.get(row_symbol(model.fmt, r.symbol), r.symbol) for r in model.rows]
    model.hidden = {j for j, c in enumerate(model.columns) if c.symbol not in var_names and c.lb == c.ub}
    position = {sym: k for k, sym in enumerate(var_names)}
    shown = [j for j in range(len(model.columns)) if j not in model.hidden]
    model.order = sorted(shown, key=lambda j: (position.get(model.columns[j].symbol, len(position)), j))
    place = {sym: k for k, sym in enumerate(con_names)}
    model.row_order = sorted(range(len(model.rows)),
                             key=lambda i: (place.get(row_symbol(model.fmt, model.rows[i].symbol), len(place)), i))
    objective = symbols.get("objective")
    if isinstance(objective, str) and objective:
        model.objective_name = clean(objective)


def row_symbol(fmt: str, name: str) -> str:
    """The symbol of the Pyomo constraint a file row comes from (both rows of a range share it)."""
    if fmt == "lp":
        match = _ROW_SYMBOL.match(name)
        return match.group(1) if match else name
    return name


def _pairs(value: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(value, list):
        for item in value:
            if isinstance(item, list) and len(item) == 2 and all(isinstance(s, str) for s in item):
                out.setdefault(item[0], clean(item[1]))
    return out


def clean(text: str) -> str:
    """One printable line of at most ``MAX_NAME_CHARS``: no newline can forge model text."""
    text = _UNPRINTABLE.sub("?", text)
    return text if len(text) <= MAX_NAME_CHARS else text[:MAX_NAME_CHARS] + "..."


def objective_is_constant(model: FileModel) -> bool:
    """True when the objective depends on no column the model lets move (``lb < ub``)."""
    obj = model.objective
    movable = {j for j, c in enumerate(model.columns) if c.lb < c.ub}
    used = {j for j, c in obj.linear if c} | {i for i, j, c in obj.quad if c} | {j for i, j, c in obj.quad if c}
    used |= expr.variables_in(obj.expr, model.defined)
    return not (used & movable)


def model_class(model: FileModel) -> str:
    """What the file holds: lp, qp, qcqp or nlp, with an ``mi`` prefix when columns are integer."""
    mixed = "mi" if model.is_mip else ""
    if not model.nonlinear:
        return f"{mixed}qp" if model.quadratic else ("milp" if mixed else "lp")
    rows = [expr.degree(r.expr, model.defined) for r in model.rows]
    objective = expr.degree(model.objective.expr, model.defined)
    if any(d is None or d > 2 for d in [objective, *rows]):
        return f"{mixed}nlp"
    return f"{mixed}qcqp" if any(d == 2 for d in rows) else f"{mixed}qp" if objective == 2 else (
        "milp" if mixed else "lp")


def convex_quadratic(model: FileModel) -> bool | None:
    """Whether the quadratic objective is convex for its sense (True/False), None if too large to tell.

    Minimizing needs a positive semidefinite Hessian, maximizing a negative semidefinite one;
    checked with the smallest eigenvalue (numpy), with a tolerance relative to the largest entry.
    """
    import numpy as np

    cols = sorted({i for i, _, _ in model.objective.quad} | {j for _, j, _ in model.objective.quad})
    if len(cols) > CONVEXITY_MAX_DIM:
        return None
    where = {j: k for k, j in enumerate(cols)}
    q = np.zeros((len(cols), len(cols)))
    for i, j, c in model.objective.quad:  # c * x_i * x_j  ->  0.5 x'Qx with Q symmetric
        a, b = where[i], where[j]
        if a == b:
            q[a, a] += 2 * c
        else:
            q[a, b] += c
            q[b, a] += c
    if model.sense == "maximize":
        q = -q
    scale = max(1.0, float(np.abs(q).max(initial=0.0)))
    return bool(np.linalg.eigvalsh(q).min(initial=0.0) >= -1e-9 * scale)
