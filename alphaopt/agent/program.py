"""Turn a model's reply into a program that meets the contract, without running it.

The contract: a module that defines ``build_model()`` returning a Pyomo ``ConcreteModel`` with
one active objective; it neither solves nor prints. Small models often break it in the same
ways, so these fixes are mechanical (on the syntax tree) and each one is reported:

- the reply's code is taken from its fenced block (an unterminated one too);
- the program is cut before its own solve call (``.solve(``, ``SolverFactory``), prints and
  displays are dropped, and a ``__main__`` block is removed;
- a module-level model is wrapped into ``build_model()``; a missing ``return model`` is added;
- missing imports of ``pyomo.environ`` (as ``pyo`` or by name) and ``math`` are added;
- a component named like one of the model's own attributes (``model.name``, ``model.type``, ...)
  is renamed with a trailing underscore;
- ``sum(model.x)`` over an indexed variable (which sums the indexes, not the variables) becomes
  ``sum(model.x.values())``;
- a ``sense=`` argument given to a constraint (the relation already says it) is dropped, a
  strict ``<`` or ``>`` in a constraint (Pyomo refuses them) becomes ``<=`` or ``>=``, and an
  expression passed as the first positional argument of ``Constraint``/``Objective`` (Pyomo reads
  it as an index set) is passed as ``expr=``;
- ``model.x[i][j]`` on a component over several index sets becomes ``model.x[i, j]``; a
  constraint assigned in a loop becomes a ``ConstraintList``; a component used before its
  declaration is declared first.

Nothing here reads the problem text: the rewrites that follow from what the text says (the
objective's sense, a bound's direction) live in ``alphaopt.agent.rewrites``, which hands them to
``normalize`` as its ``rewrite`` step.

``cut_repetition`` mends a reply that ran into the token limit by repeating itself: a small
model at temperature 0 can loop on one line until the limit; the loop is cut after its first
copy, and the program ends at its last complete statement.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator, Mapping

from alphaopt.answers import ANSWER

_FENCE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)

#: Bare Pyomo names a program may use without importing them.
PYOMO_NAMES = frozenset((
    "ConcreteModel", "AbstractModel", "Var", "Param", "Set", "RangeSet", "Objective", "Constraint",
    "ConstraintList", "Expression", "NonNegativeReals", "NonNegativeIntegers", "NonPositiveReals",
    "NonPositiveIntegers", "PositiveReals", "PositiveIntegers", "NegativeReals", "NegativeIntegers", "Reals",
    "Integers", "Binary", "Boolean", "UnitInterval", "PercentFraction", "Any", "maximize", "minimize", "quicksum",
    "sum_product", "value", "inequality", "Block", "Suffix", "summation",
))
_DROP_CALLS = frozenset({"print", "display", "pprint", "write", "SolverFactory", "solve", "load", "load_solutions"})
_MODEL_CTORS = frozenset({"ConcreteModel", "AbstractModel"})
#: Names a Pyomo model already uses for its own attributes; a component declared under one fails.
RESERVED_NAMES = frozenset((
    "active", "name", "type", "model", "index", "values", "items", "keys", "load", "write", "display", "clone",
    "dim", "ctype", "construct", "component", "local_name", "pprint", "activate", "deactivate", "fix_all_vars",
    "set_value", "parent_block", "parent_component", "root_block", "add_component", "del_component",
    "find_component", "is_indexed", "is_constructed", "getname", "id_index_map", "component_objects",
    "component_data_objects", "block_data_objects", "reclassify_component_type", "collect_ctypes",
))


def extract_code(reply: str) -> str:
    """The program in a model's reply: the fenced block that defines the model, else the text."""
    blocks = [b.strip("\n") for b in _FENCE.findall(reply)]
    blocks = [b for b in blocks if b.strip()]
    if not blocks:
        return reply.strip("\n`")
    for needle in ("def build_model", "ConcreteModel", "AbstractModel"):
        hits = [b for b in blocks if needle in b]
        if hits:
            return max(hits, key=len)
    return max(blocks, key=len)


#: A rewrite of the parsed program that ``normalize`` runs after its own fixes and before it adds
#: missing imports (so that a name the rewrite writes gets imported); it appends what it changed.
Rewrite = Callable[[ast.Module, list[str]], None]


def normalize(code: str, *, rewrite: Rewrite | None = None) -> tuple[str, list[str]]:
    """Apply the mechanical contract fixes; returns ``(program, fixes applied)``.

    ``rewrite`` (``alphaopt.agent.rewrites``) changes the parsed program further, before the
    missing imports are added. Code that does not parse is returned unchanged: the run reports
    the syntax error and the repair loop shows it to the model.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code, []
    fixes: list[str] = []
    body = _strip_main_block(tree.body, fixes)
    body = _clean_body(body, fixes, where="module")
    build = next((n for n in body if isinstance(n, ast.FunctionDef) and n.name == "build_model"), None)
    if build is None:
        body = _wrap_module_model(body, fixes)
    else:
        build.body = _clean_body(build.body, fixes, where="build_model") or [ast.Pass()]
        _ensure_return(build, fixes)
    tree.body = body
    _rename_reserved(tree, fixes)
    _sum_indexed_vars(tree, fixes)
    _constraint_relations(tree, fixes)
    _chained_indexes(tree, fixes)
    _constraints_in_loops(tree, fixes)
    _declare_before_use(tree, fixes)
    if rewrite is not None:
        rewrite(tree, fixes)
    tree.body[0:0] = _missing_imports(tree, fixes)
    ast.fix_missing_locations(tree)
    if not fixes:
        return code, []
    return ast.unparse(tree) + "\n", fixes


def _calls(node: ast.AST) -> set[str]:
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            if isinstance(sub.func, ast.Name):
                names.add(sub.func.id)
            elif isinstance(sub.func, ast.Attribute):
                names.add(sub.func.attr)
    return names


def _strip_main_block(body: list[ast.stmt], fixes: list[str]) -> list[ast.stmt]:
    kept = []
    for node in body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            fixes.append("removed the __main__ block")
            continue
        kept.append(node)
    return kept


def _clean_body(body: list[ast.stmt], fixes: list[str], *, where: str) -> list[ast.stmt]:
    """Cut at the first solve call; drop print/display statements."""
    kept: list[ast.stmt] = []
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)):
            if isinstance(node, ast.ImportFrom) and node.module and "opt" in node.module and any(
                a.name == "SolverFactory" for a in node.names
            ):
                node.names = [a for a in node.names if a.name != "SolverFactory"]
                if not node.names:
                    continue
            kept.append(node)
            continue
        called = _calls(node)
        if called & {"solve", "SolverFactory"}:
            fixes.append(f"cut the {where} before its own solve call")
            break
        if called & _DROP_CALLS:
            fixes.append(f"dropped a {'/'.join(sorted(called & _DROP_CALLS))} statement in {where}")
            continue
        kept.append(node)
    return kept


def _model_var(body: list[ast.stmt]) -> str | None:
    for node in body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and len(node.targets) == 1:
            func = node.value.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            target = node.targets[0]
            if name in _MODEL_CTORS and isinstance(target, ast.Name):
                return target.id
    return None


def _ensure_return(build: ast.FunctionDef, fixes: list[str]) -> None:
    if any(isinstance(n, ast.Return) for n in build.body):
        return
    var = _model_var(build.body)
    if var:
        build.body.append(ast.Return(value=ast.Name(id=var, ctx=ast.Load())))
        fixes.append(f"added 'return {var}' to build_model")


def _wrap_module_model(body: list[ast.stmt], fixes: list[str]) -> list[ast.stmt]:
    var = _model_var(body)
    if var is None:
        return body
    head = [n for n in body if isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef))]
    rest = [n for n in body if n not in head]
    func = ast.parse("def build_model():\n    pass\n").body[0]  # the node's fields as this Python has them
    assert isinstance(func, ast.FunctionDef)
    func.body = [*rest, ast.Return(value=ast.Name(id=var, ctx=ast.Load()))]
    fixes.append("wrapped the module-level model into build_model()")
    return [*head, func]


def _model_names(tree: ast.Module) -> set[str]:
    """The names bound to a ``ConcreteModel()`` (or ``AbstractModel()``) in the program."""
    return {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)
            for t in n.targets if isinstance(t, ast.Name) and call_name(n.value) in _MODEL_CTORS}


def _component(node: ast.AST, models: set[str]) -> str | None:
    """``NAME`` when the node is ``model.NAME`` for a model of the program."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in models:
        return node.attr
    return None


def _rename_reserved(tree: ast.Module, fixes: list[str]) -> None:
    """``model.name = pyo.Var()`` fails in Pyomo; rename such components everywhere to ``name_``."""
    models = _model_names(tree)
    clashing = {t.attr for n in ast.walk(tree) if isinstance(n, ast.Assign) for t in n.targets
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id in models
                and t.attr in RESERVED_NAMES}
    if not clashing:
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in models \
                and node.attr in clashing:
            node.attr += "_"
    fixes.append("renamed components that clash with Pyomo's own attributes: " + ", ".join(sorted(clashing)))


def _sum_indexed_vars(tree: ast.Module, fixes: list[str]) -> None:
    """Iterating an indexed component yields its indexes, so ``sum(model.x)`` adds up the index
    numbers: a constant, that turns a constraint into True/False or an objective into a number.
    For components declared as ``model.x = Var(<index>, ...)``, sum the variables instead."""
    indexed = {t.attr for n in ast.walk(tree) if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)
               and call_name(n.value) == "Var" and n.value.args for t in n.targets if isinstance(t, ast.Attribute)}
    changed = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("sum", "quicksum") \
                and len(node.args) == 1 and isinstance(node.args[0], ast.Attribute) and node.args[0].attr in indexed:
            summed = node.args[0]
            node.args[0] = ast.Call(func=ast.Attribute(value=summed, attr="values", ctx=ast.Load()),
                                    args=[], keywords=[])
            changed.add(summed.attr)
    if changed:
        fixes.append("summed the variables, not their indexes: " + ", ".join(f"sum(model.{n}.values())"
                                                                           for n in sorted(changed)))


def _constraint_relations(tree: ast.Module, fixes: list[str]) -> None:
    """Three ways a model misstates a relation Pyomo would refuse: ``Constraint(a <= b)`` (the
    expression taken for an index set: passed as ``expr=``), ``Constraint(expr=a <= b, sense=...)``
    (an unknown argument: dropped) and ``a < b`` (a strict inequality: made non-strict)."""
    dropped = strict = moved = 0
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = call_name(node)
        if _expression_passed_as_index(node, name):
            node.keywords.insert(0, ast.keyword(arg="expr", value=node.args.pop(0)))
            moved += 1
        if name == "Constraint" and any(k.arg == "sense" for k in node.keywords):
            node.keywords = [k for k in node.keywords if k.arg != "sense"]
            dropped += 1
        if name not in ("Constraint", "add"):
            continue
        for arg in [*node.args, *(k.value for k in node.keywords if k.arg in ("expr", "rule"))]:
            relation = arg.body if isinstance(arg, ast.Lambda) else arg  # not conditions inside sums
            if isinstance(relation, ast.Compare):
                fixed = [ast.LtE() if isinstance(op, ast.Lt) else ast.GtE() if isinstance(op, ast.Gt) else op
                         for op in relation.ops]
                strict += sum(a is not b for a, b in zip(fixed, relation.ops, strict=True))
                relation.ops = fixed
    if moved:
        fixes.append(f"passed {moved} expression(s) given as the first argument of Constraint/Objective as expr= "
                     "(a first positional argument is an index set)")
    if dropped:
        fixes.append(f"dropped the sense= argument of {dropped} constraint(s): the relation in expr says it")
    if strict:
        fixes.append(f"made {strict} strict inequality(ies) in constraints non-strict (< to <=, > to >=)")


def _chained_indexes(tree: ast.Module, fixes: list[str]) -> None:
    """``model.x[i][j]`` on a component declared over two or more index sets
    (``model.x = Var(I, J)``) fails with a KeyError: index it as ``model.x[i, j]``."""
    models = _model_names(tree)
    multi = {name for n in ast.walk(tree) if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)
             and call_name(n.value) in ("Var", "Param") and len(n.value.args) >= 2
             for name in (_component(t, models) for t in n.targets) if name}
    changed: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Subscript):
            inner = node.value
            name = _component(inner.value, models)
            if name in multi and not isinstance(inner.slice, ast.Tuple):
                parts = [inner.slice, *(node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice])]
                node.value, node.slice = inner.value, ast.Tuple(elts=parts, ctx=ast.Load())
                changed.add(name)
    if changed:
        fixes.append("indexed " + ", ".join(f"model.{n}[i, j]" for n in sorted(changed))
                     + " as one tuple (model.x[i][j] fails on a component over several index sets)")


def _constraints_in_loops(tree: ast.Module, fixes: list[str]) -> None:
    """``model.c = Constraint(expr=...)`` inside a loop replaces the same component on every pass,
    so only the last constraint is kept (Pyomo merely warns). Make ``model.c`` a
    ``ConstraintList``, declared before the loop, and add each pass's constraint to it."""
    models = _model_names(tree)
    outside: set[str] = set()
    for stmt in _statements(tree.body, in_loop=False):
        name = _loop_constraint(stmt[0], models)
        if name and not stmt[1]:
            outside.add(name)
    declared: set[str] = set()

    def rewrite_loop(node: ast.stmt, found: list[tuple[str, ast.Assign]]) -> None:
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if not isinstance(body, list):
                continue
            for k, stmt in enumerate(body):
                name = _loop_constraint(stmt, models)
                if name and name not in outside:
                    assert isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Call)
                    expr = next(kw.value for kw in stmt.value.keywords if kw.arg == "expr")
                    add = ast.Attribute(value=stmt.targets[0], attr="add", ctx=ast.Load())
                    body[k] = ast.Expr(value=ast.Call(func=add, args=[expr], keywords=[]))
                    found.append((name, stmt))
                else:
                    rewrite_loop(stmt, found)

    def visit(body: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for stmt in body:
            if isinstance(stmt, (ast.For, ast.While)):
                found: list[tuple[str, ast.Assign]] = []
                rewrite_loop(stmt, found)
                for name, assign in found:
                    if name not in declared:
                        declared.add(name)
                        func = assign.value.func  # type: ignore[attr-defined]
                        ctor = (ast.Attribute(value=func.value, attr="ConstraintList", ctx=ast.Load())
                                if isinstance(func, ast.Attribute) else ast.Name(id="ConstraintList", ctx=ast.Load()))
                        out.append(ast.Assign(targets=[assign.targets[0]],
                                              value=ast.Call(func=ctor, args=[], keywords=[])))
            else:
                for field in ("body", "orelse", "finalbody"):
                    inner = getattr(stmt, field, None)
                    if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                        setattr(stmt, field, visit(inner))
            out.append(stmt)
        return out

    tree.body = visit(tree.body)
    if declared:
        fixes.append("made " + ", ".join(f"model.{n}" for n in sorted(declared))
                     + " a ConstraintList filled in the loop"
                     + " (assigning a Constraint in a loop keeps only the last one)")


def _declare_before_use(tree: ast.Module, fixes: list[str]) -> None:
    """A component used before the line that declares it (``model.dist`` in the objective, the
    ``Param`` at the end) fails with an AttributeError. In ``build_model()``'s own body, move such
    a declaration up to just before its first use, with the literal data it needs (``data = {...}``
    in between), when it depends on nothing else assigned in between."""
    build = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "build_model"), None)
    if build is None:
        return
    models = _model_names(tree)
    moved: list[str] = []
    k = 0
    while k < len(build.body):
        stmt = build.body[k]
        name = _component(stmt.targets[0], models) if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else None
        first = next((j for j in range(k) if name and _uses_component(build.body[j], name, models)), None)
        if (not isinstance(stmt, ast.Assign) or name is None or first is None
                or any(_assigns_component(build.body[j], name, models) for j in range(k))):
            k += 1
            continue
        needed = {n.id for n in ast.walk(stmt.value) if isinstance(n, ast.Name)}
        needed_components = {c for n in ast.walk(stmt.value) if (c := _component(n, models))}
        between = build.body[first:k]
        data = [b for b in between if _binds(b, needed)]  # literal data the declaration needs comes along
        if any(not _literal_assign(b) for b in data) or any(
                _assigns_component(b, c, models) for b in between for c in needed_components):
            k += 1
            continue
        for stmt_ in [*data, stmt]:
            build.body.remove(stmt_)
        build.body[first:first] = [*data, stmt]
        moved.append(name)
        k += 1
    if moved:
        fixes.append("declared " + ", ".join(f"model.{n}" for n in moved) + " before its first use")


def _uses_component(stmt: ast.stmt, name: str, models: set[str]) -> bool:
    return any(_component(n, models) == name and isinstance(n.ctx, ast.Load) for n in ast.walk(stmt)
               if isinstance(n, ast.Attribute))


def _assigns_component(stmt: ast.stmt, name: str, models: set[str]) -> bool:
    return any(_component(n, models) == name and isinstance(n.ctx, ast.Store) for n in ast.walk(stmt)
               if isinstance(n, ast.Attribute))


def _literal_assign(stmt: ast.stmt) -> bool:
    """``name = <a literal: numbers, strings, lists, dicts, tuples of them>``."""
    return isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name) for t in stmt.targets) and not any(
        isinstance(n, (ast.Name, ast.Attribute, ast.Call)) for n in ast.walk(stmt.value))


def _binds(stmt: ast.stmt, names: set[str]) -> bool:
    return any(isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store) and n.id in names for n in ast.walk(stmt))


def _statements(body: list[ast.stmt], *, in_loop: bool) -> Iterator[tuple[ast.stmt, bool]]:
    """Every statement with whether it sits inside a for/while loop."""
    for stmt in body:
        yield stmt, in_loop
        inner_loop = in_loop or isinstance(stmt, (ast.For, ast.While))
        for field in ("body", "orelse", "finalbody"):
            inner = getattr(stmt, field, None)
            if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                yield from _statements(inner, in_loop=inner_loop)


def _loop_constraint(stmt: ast.stmt, models: set[str]) -> str | None:
    """``NAME`` for ``model.NAME = Constraint(expr=...)`` (no index set, no rule)."""
    if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.value, ast.Call)):
        return None
    call = stmt.value
    if call_name(call) != "Constraint" or call.args or not any(kw.arg == "expr" for kw in call.keywords):
        return None
    return _component(stmt.targets[0], models)


def _expression_passed_as_index(call: ast.Call, name: str | None) -> bool:
    """``Constraint(a <= b)`` or ``Objective(2 * x + y)``: Pyomo reads a first positional argument as
    the index set and fails; the model meant ``expr=``."""
    if name not in ("Constraint", "Objective") or len(call.args) != 1 or any(
            k.arg in ("expr", "rule") for k in call.keywords):
        return False
    arg = call.args[0]
    if name == "Constraint":
        return isinstance(arg, ast.Compare)
    return isinstance(arg, (ast.BinOp, ast.UnaryOp)) or (
        isinstance(arg, ast.Call) and call_name(arg) in ("sum", "quicksum", "sum_product"))


def cut_repetition(code: str, *, min_repeats: int = 3, max_period: int = 4) -> tuple[str, list[str]]:
    """Cut a program that loops on the same line(s) until the token limit.

    When a block of up to ``max_period`` lines repeats at least ``min_repeats`` times in a row,
    everything after its first copy is the loop: it is dropped, then trailing lines are dropped
    until the program parses. A loop that only counts up the names (``model.c12 = ...``,
    ``model.c13 = ...``, the rest the same) counts too when it runs on to the end of the reply,
    at least ``min_repeats + 1`` times. Returns the program unchanged (and no fix) when there is
    no loop or nothing that parses is left.
    """
    lines = code.splitlines()
    exact = [ln.strip() for ln in lines]
    counted = [_COUNTED_CONSTRAINT.sub(r"\1#\2", ln) for ln in exact]
    for keys, to_end in ((exact, False), (counted, True)):
        found = _find_loop(keys, min_repeats + to_end, max_period, to_end)
        if found is None:
            continue
        start, period, repeats = found
        kept = lines[:start + period]
        while kept:
            try:
                ast.parse("\n".join(kept))
            except SyntaxError:
                kept.pop()
                continue
            return "\n".join(kept) + "\n", [
                f"cut a reply that repeated {period} line(s) {repeats}+ times until the token limit"]
        return code, []
    return code, []


_COUNTED_CONSTRAINT = re.compile(r"^([\w.]*?[A-Za-z_])\d+(\s*=\s*\w*\.?Constraint\(.*)$")


def _unfinished_copy(rest: list[str], block: list[str]) -> bool:
    """Whether the lines after a loop are nothing or the start of one more copy of its block."""
    if len(rest) > len(block):
        return False
    return rest[:-1] == block[:len(rest) - 1] and (not rest or block[len(rest) - 1].startswith(rest[-1]))


def _find_loop(keys: list[str], min_repeats: int, max_period: int, to_end: bool) -> tuple[int, int, int] | None:
    """The first ``(start, period, repeats)`` of a block repeated back to back; with ``to_end``,
    only a run that lasts until the last (possibly unfinished) line."""
    for start in range(len(keys)):
        for period in range(1, max_period + 1):
            block = keys[start:start + period]
            if len(block) < period or max(map(len, block)) < 8:  # not a run of closing brackets
                continue
            repeats = 1
            while keys[start + repeats * period:start + (repeats + 1) * period] == block:
                repeats += 1
            rest = keys[start + repeats * period:]
            if repeats < min_repeats or (to_end and not _unfinished_copy(rest, block)):
                continue
            return start, period, repeats
    return None


def number(node: ast.expr) -> float | None:
    """The value of a plain number (or a negated one) in a program, else None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = number(node.operand)
        return None if value is None else -value
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    return None


def call_name(call: ast.Call) -> str | None:
    """The name a call calls: ``Constraint`` for ``pyo.Constraint(...)`` and ``Constraint(...)``."""
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def _missing_imports(tree: ast.Module, fixes: list[str]) -> list[ast.stmt]:
    bound: set[str] = set()
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if any(a.name == "*" for a in node.names) and node.module and node.module.startswith("pyomo"):
                bound.update(PYOMO_NAMES)
            bound.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, ast.Store) else used).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    missing = used - bound
    added: list[ast.stmt] = []
    for alias in ("pyo", "pe", "pyomo"):
        if alias in missing:
            module = "pyomo.environ"
            added.append(ast.Import(names=[ast.alias(name=module, asname=None if alias == "pyomo" else alias)]))
    names = sorted(missing & PYOMO_NAMES)
    if names:
        added.append(ast.ImportFrom(module="pyomo.environ", names=[ast.alias(name=n) for n in names], level=0))
    if "math" in missing:
        added.append(ast.Import(names=[ast.alias(name="math")]))
    if added:
        fixes.append("added missing imports: " + "; ".join(ast.unparse(a) for a in added))
    return added


_TO_INTEGERS = {"NonNegativeReals": "NonNegativeIntegers", "PositiveReals": "PositiveIntegers", "Reals": "Integers"}
_TO_REALS = {v: k for k, v in _TO_INTEGERS.items()}


def integrality_variants(program: str) -> list[tuple[str, str]]:
    """The program with its variables' declared domains made integer, and made continuous:
    ``(what changed, program)`` for each flip that changes something. Binary domains stay.
    Learning tries these before asking the model, as the cheapest way to a target objective."""
    variants = []
    for what, mapping in (("made the continuous variables integer", _TO_INTEGERS),
                          ("made the integer variables continuous", _TO_REALS)):
        pattern = re.compile(r"\b(" + "|".join(mapping) + r")\b")
        flipped = pattern.sub(_replacer(mapping), program)
        if flipped != program:
            variants.append((what, flipped))
    return variants


def _replacer(mapping: Mapping[str, str]) -> Callable[[re.Match[str]], str]:
    return lambda found: mapping[found.group(1)]


_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def hardcodes(program: str, target: float, problem: str) -> bool:
    """Whether a program writes the target answer itself instead of letting the solver find it.

    True when any numeric literal (or numeric string) in the program equals the target or its
    negation, within the answer tolerance (``alphaopt.answers.ANSWER``), unless that number also
    appears in the problem text (then it is data, not the answer).
    """
    in_text = {float(n.replace(",", "")) for n in _NUMBER.findall(problem)}
    if any(_writes(target, n) for n in in_text):
        return False
    try:
        tree = ast.parse(program)
    except SyntaxError:
        return any(_writes(target, float(n.replace(",", ""))) for n in _NUMBER.findall(program))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, str):
                try:
                    value = float(value.replace(",", ""))
                except ValueError:
                    continue
            if isinstance(value, (int, float)) and not isinstance(value, bool) and _writes(target, float(value)):
                return True
    return False


def _writes(target: float, number: float) -> bool:
    """Whether a number is the target answer, or its negation (a minimized negative profit),
    within the answer tolerance."""
    return ANSWER.correct(number, target) or (target != 0 and ANSWER.correct(-number, target))


def numeric_constants(code: str) -> set[float]:
    """The numbers a program's code writes (comments and strings left out); empty when it
    does not parse."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    return {float(node.value) for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and isinstance(node.value, (int, float)) and not isinstance(node.value, bool)}


_PATCHABLE = frozenset({"Constraint", "Objective"})
#: What a lesson's review may correct (``nodes._review``): a variable's declaration too, never added.
REVIEWABLE = frozenset({"Constraint", "Objective", "Var"})
#: How ``apply_lines`` reports each change it made (the answer lists them).
LINE_CHANGES = ("added: ", "replaced: ")
#: How a review's change is named in the attempt's fixes: this, the insight's id, then the change.
REVIEW_FIX = "review by insight "


def apply_lines(code: str, lines: str, *, kinds: frozenset[str] = _PATCHABLE) -> tuple[str, list[str]]:
    """Put the ``model.NAME = pyo.Constraint(...)`` (or ``Objective``; of ``kinds``, which may add
    ``Var``) statements of ``lines`` into ``code``'s ``build_model``: one that names a component
    the program already assigns (or an objective, when the program has one, whatever its name)
    replaces that statement, a new one goes before the ``return`` (a variable only replaces); the
    line's model variable becomes the program's.
    Anything else in ``lines`` is ignored. Returns ``(program, what changed)``; the program is
    unchanged when nothing applied (either does not parse, no such statement, or each is
    already there word for word)."""
    try:
        tree, patch = ast.parse(code), ast.parse(lines)
    except SyntaxError:
        return code, []
    build = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "build_model"), None)
    models = _model_names(tree)
    if build is None or not models:
        return code, []
    model = next(iter(models))
    changes: list[str] = []
    for stmt in patch.body:
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.value, ast.Call)
                and call_name(stmt.value) in kinds):
            continue
        target = stmt.targets[0]
        if not (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)):
            continue
        name = target.attr
        base = target.value.id
        for node in ast.walk(stmt):  # the line's model variable is the program's
            if isinstance(node, ast.Name) and node.id == base:
                node.id = model
        text = ast.unparse(stmt)
        at = next((i for i, n in enumerate(build.body) if isinstance(n, ast.Assign) and len(n.targets) == 1
                   and (_component(n.targets[0], models) == name
                        or (call_name(stmt.value) == "Objective" and _is_objective(n, models)))), None)
        if at is not None:
            if ast.unparse(build.body[at]) == text:
                continue
            build.body[at] = stmt
            changes.append(f"{LINE_CHANGES[1]}{text}")
        elif call_name(stmt.value) != "Var":  # a new variable would stand in no constraint
            end = next((i for i, n in enumerate(build.body) if isinstance(n, ast.Return)), len(build.body))
            build.body.insert(end, stmt)
            changes.append(f"{LINE_CHANGES[0]}{text}")
    if not changes:
        return code, []
    ast.fix_missing_locations(tree)
    return ast.unparse(tree) + "\n", changes


def _is_objective(stmt: ast.Assign, models: set[str]) -> bool:
    return (_component(stmt.targets[0], models) is not None and isinstance(stmt.value, ast.Call)
            and call_name(stmt.value) == "Objective")


def weighted_objective(code: str) -> str | None:
    """The objective's expression when it multiplies some term by a number other than 1
    (``120 * model.trains + 30 * model.trams``); None when it adds its terms unweighted, or the
    program has no single objective to read."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    exprs = [kw.value for node in ast.walk(tree) if isinstance(node, ast.Call) and call_name(node) == "Objective"
             for kw in node.keywords if kw.arg == "expr"]
    if len(exprs) != 1:
        return None
    weighted = any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Mult)
                   and any(isinstance(side, ast.Constant) and side.value != 1 for side in (n.left, n.right))
                   for n in ast.walk(exprs[0]))
    return ast.unparse(exprs[0]) if weighted else None
