"""Program side: execute one program, build its model, hand the model over as files. Nothing else.

Runs inside the sandbox in the process that executes the model-written program (forked from
the worker, see ``worker.py``). Everything this process produces is treated as untrusted: the
model files are solved, checked and rendered by ``trusted.py`` in a process that never runs
the program, and the rest (symbol maps, data text, stage times) only names and describes.

Format: a linear model (and a quadratic objective without integers) is written as an LP file,
which HiGHS reads; anything else (nonlinear, quadratic constraints, quadratic with integers)
as an NL file, which SCIP reads. A quadratic objective gets both, since only the trusted side
decides convexity.

The files reach the worker through ``handover.py``. Imported as ``solvers.export`` and, inside
the sandbox, as the top-level module ``export``; it uses only the standard library and Pyomo.
"""

from __future__ import annotations

import errno
import io
import os
import re
import sys
import time
import traceback
import types
from typing import Any

PROGRAM_NAME = "program.py"
DATA_TEXT_LINES = 60  # cap on declared sets and parameters described
_LP_ROW = re.compile(r"^(?:c_[ule]|r_[lu])_(.+)_$")
_WRITE_OPTIONS: dict[str, dict[str, Any]] = {
    "lp": {"symbolic_solver_labels": False},
    "nl": {"symbolic_solver_labels": False, "linear_presolve": False, "scale_model": False},
}


def preload() -> None:
    """Import Pyomo and its LP/NL writers, and write one tiny model in each format."""
    import pyomo.environ as pyo

    m = pyo.ConcreteModel()
    m.x = pyo.Var(bounds=(0, 1))
    m.c = pyo.Constraint(expr=m.x >= 0.5)
    m.o = pyo.Objective(expr=m.x)
    for fmt in _WRITE_OPTIONS:
        write(m, fmt)


def run(program_path: str) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Execute the program file and write its model: a description (``{"status": "exported", ...}``
    or a failure status) and the model files by format. Every failure becomes a status."""
    owner = os.getpid()
    try:
        return _run(program_path, owner)
    except BaseException as exc:  # noqa: BLE001 - the program is untrusted, report everything
        _exit_if_not_owner(owner)
        return _exception_result(exc, program_path), {}


def _run(program_path: str, owner: int) -> tuple[dict[str, Any], dict[str, bytes]]:
    import pyomo.environ as pyo

    start = time.perf_counter()
    with open(program_path, encoding="utf-8") as f:
        source = f.read()
    module = types.ModuleType("program")  # a real module, so dataclasses/pickle/typing work
    module.__file__ = program_path
    sys.modules["program"] = module
    exec(compile(source, program_path, "exec"), module.__dict__)
    _exit_if_not_owner(owner)
    build = getattr(module, "build_model", None)
    if not callable(build):
        return _invalid("the program does not define a function build_model()"), {}
    model = build()
    _exit_if_not_owner(owner)
    if isinstance(model, pyo.AbstractModel):
        model = model.create_instance()
    if not isinstance(model, pyo.Block) or not getattr(model, "is_constructed", lambda: True)():
        return _invalid(f"build_model() returned {type(model).__name__}, expected a Pyomo ConcreteModel"), {}
    objectives = list(model.component_data_objects(pyo.Objective, active=True, descend_into=True))
    if len(objectives) != 1:
        names = ", ".join(o.name for o in objectives[:5])
        return _invalid(f"the model has {len(objectives)} active objectives{f' ({names})' if names else ''}; "
                        "exactly one is required"), {}
    variables = list(model.component_data_objects(pyo.Var, active=True, descend_into=True))
    if not variables:
        return _invalid("the model has no variables"), {}
    built = time.perf_counter()
    formats, reason = route(model, objectives[0], variables)
    routed = time.perf_counter()
    written = {fmt: write(model, fmt) for fmt in formats}
    _exit_if_not_owner(owner)
    description = {"status": "exported", "formats": formats, "route": reason,
                   "symbols": {fmt: symbols for fmt, (_, symbols) in written.items()}, "data_text": data_text(model),
                   "stage_ms": {"build": (built - start) * 1000, "route": (routed - built) * 1000,
                                "export": (time.perf_counter() - routed) * 1000}}
    return description, {fmt: data for fmt, (data, _) in written.items()}


def route(model: Any, objective: Any, variables: list[Any]) -> tuple[list[str], str]:
    """Which files to write, and why: ``(["lp"], "linear")``, ``(["nl"], "nonlinear constraint c")``."""
    import pyomo.environ as pyo
    from pyomo.core.expr.visitor import polynomial_degree

    integer = any(not v.fixed and v.is_integer() for v in variables)
    objective_degree = polynomial_degree(objective.expr)
    for con in model.component_data_objects(pyo.Constraint, active=True, descend_into=True):
        degree = polynomial_degree(con.body)
        if degree is None or degree > 1:
            kind = "quadratic" if degree == 2 else "nonlinear"
            return ["nl"], f"{kind} constraint {con.name}"
    if objective_degree is None or objective_degree > 2:
        return ["nl"], "nonlinear objective"
    if objective_degree == 2:
        if integer:
            return ["nl"], "quadratic objective with integer variables"
        return ["lp", "nl"], "quadratic objective"
    return ["lp"], "linear"


def write(model: Any, fmt: str) -> tuple[bytes, dict[str, Any]]:
    """``model`` as an ``fmt`` file, and its symbol map (file symbol -> Pyomo name, in declaration order)."""
    import pyomo.environ as pyo
    from pyomo.repn.plugins.lp_writer import LPWriter
    from pyomo.repn.plugins.nl_writer import NLWriter

    stream = io.StringIO()
    if fmt == "lp":
        info = LPWriter().write(model, stream, **_WRITE_OPTIONS[fmt])
        by_object = {key: (m.group(1) if (m := _LP_ROW.match(sym)) else sym)
                     for key, sym in info.symbol_map.byObject.items()}
    else:
        info = NLWriter().write(model, stream, **_WRITE_OPTIONS[fmt])
        by_object = {id(v): f"v{j}" for j, v in enumerate(info.variables)}
        by_object.update({id(c): f"c{i}" for i, c in enumerate(info.constraints)})
    symbols: dict[str, Any] = {
        kind: [[by_object[id(c)], c.name] for c in model.component_data_objects(ctype, active=True, descend_into=True)
               if id(c) in by_object]
        for kind, ctype in (("vars", pyo.Var), ("cons", pyo.Constraint))}
    objective = next(iter(model.component_data_objects(pyo.Objective, active=True, descend_into=True)))
    symbols["objective"] = objective.name
    return stream.getvalue().encode(), symbols


def data_text(model: Any) -> list[str]:
    """Declared Pyomo sets (with members) and parameters (with values), capped; best effort."""
    import pyomo.environ as pyo

    def short(values: list[Any], total: int) -> str:
        shown = ", ".join(str(_number(v) if isinstance(v, (int, float)) else v) for v in values)
        return shown + (f", ... ({total} in all)" if total > len(values) else "")

    out: list[str] = []
    try:
        sets = list(model.component_objects((pyo.Set, pyo.RangeSet), descend_into=True))[:DATA_TEXT_LINES]
        if sets:
            out.append("sets")
            out += [f"  {s.name} = {{{short(list(s)[:20], len(s))}}}" for s in sets]
        params = list(model.component_objects(pyo.Param, descend_into=True))[:DATA_TEXT_LINES]
        if params:
            out.append("parameters")
            for p in params:
                if p.is_indexed():
                    items = list(p.items())
                    shown = [f"{k}: {_number(pyo.value(v))}" for k, v in items[:20]]
                    out.append(f"  {p.name} = {{{short(shown, len(items))}}}")
                else:
                    out.append(f"  {p.name} = {_number(pyo.value(p))}")
    except Exception:  # noqa: BLE001 - best effort: never hide the solve behind this
        return out
    return out


def _number(value: Any) -> Any:
    """A value as short text (``4.5``, ``10``); non-numeric values as they print."""
    if value is None:
        return None
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return value


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
        return {"status": "error",
                "error": f"SystemExit: the program called exit({exc.code!r}) instead of returning a model"}
    return {"status": "error", "error": _describe(exc, program_path)}


def _describe(exc: BaseException, program_path: str) -> str:
    """'Type: message' plus the traceback lines inside program.py (or the last frame)."""
    head = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    if program_path:
        head = head.replace(program_path, PROGRAM_NAME)
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if program_path and f.filename == program_path]
    shown = mine or [f for f in frames[-1:] if os.path.basename(f.filename) != "export.py"]
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
    """A process the program forked must never export: end it quietly."""
    if os.getpid() != owner:
        os._exit(0)
