"""The program rewrites that follow from what the problem text says (``reading.Reading``), behind
one switch: ``ExperimentalSettings.text_rewrites`` (all, none, or a list of the names in
``config.REWRITES``), so that a benchmark can run with and without each of them
(``benchmarks/experiments/rewrites_ab.py``). Only ``bounds`` ships on: measured on training
problems none of them was written from, it turned one answer right and none wrong, while the
others changed no answer (``benchmarks/README.md``, "Text rewrites"); what they know is offered
to the library instead (``library/proposals/text_rewrites.jsonl``, ``alphaopt library propose``)
and their code stays here for measuring them again.

Two rewrites change the program before it runs, only where the text is unambiguous:

- ``sense``: the objective's sense is set to the one the text asks for (a small model often writes
  ``sense=maximize`` for "the minimum cost", or leaves it out for a profit, which Pyomo
  minimizes);
- ``bounds``: a constraint that bounds an expression by a number the other way than the text states it
  ("at least 2000" written ``<= 2000``) is turned around.

Two signs make the agent ask the model for one line after an optimal run (``nodes.diagnose``):
the goal asks to minimize a count of things and the objective weights them (``counted``), or the
program never writes 1 to ``max_unused_patches`` of the text's quantities (``unused``). The patched program's result
stands only when it is optimal and leaves no more quantities unused (``patch_fell_short``).

The purely mechanical fixes, which need no text, stay in ``alphaopt.agent.program``.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Mapping, Sequence
from functools import partial

from alphaopt.agent import applied
from alphaopt.agent.program import call_name, normalize, number, numeric_constants, weighted_objective
from alphaopt.agent.reading import Reading, Relation, Sense, TextNumber
from alphaopt.config import rewrites_on


def prepare(code: str, reading: Reading, *, enabled: bool | Collection[str] = True,
            edits: Sequence[applied.Edit] = ()) -> tuple[str, list[str]]:
    """The program as it runs: the mechanical fixes (``program.normalize``), the rewrites that
    follow from the text among those ``enabled`` (``sense``, ``bounds``), then the recalled
    insights' ``edits`` (``alphaopt.agent.applied``); returns ``(program, fixes applied)``."""
    on = rewrites_on(enabled) & {"sense", "bounds"}
    return normalize(code, rewrite=partial(_rewrite, reading, on, edits) if on or edits else None)


def _rewrite(reading: Reading, on: frozenset[str], edits: Sequence[applied.Edit], tree: ast.Module,
             fixes: list[str]) -> None:
    if reading.sense and "sense" in on:
        _objective_sense(tree, reading.sense, fixes)
    if reading.bounds and "bounds" in on:
        _bound_directions(tree, reading.bounds, fixes)
    if edits:
        applied.apply(tree, edits, reading.bounds, fixes)


def counted_objective(reading: Reading, program: str) -> str | None:
    """The program's objective when the goal asks to minimize a count of things and the
    objective weights its terms (by a capacity or a cost); None otherwise."""
    return weighted_objective(program) if reading.counted_goal else None


def unused(reading: Reading, program: str) -> list[TextNumber]:
    """The text's quantities the program never writes."""
    return reading.unused(numeric_constants(program))


def wants_patch(reading: Reading, program: str, *, max_unused: int, enabled: bool | Collection[str] = True) -> bool:
    """Whether an optimal program shows a sign that one line can mend: it weights a count the
    goal asks to minimize (``counted``), or leaves out 1 to ``max_unused`` of the text's
    quantities (``unused``; more: too far off for a line each, most often a table's data left
    out). Only the signs ``enabled`` are looked for."""
    on = rewrites_on(enabled)
    if "counted" in on and counted_objective(reading, program):
        return True
    return "unused" in on and 0 < len(unused(reading, program)) <= max_unused


def patch_fell_short(reading: Reading, patched: str, original: str) -> bool:
    """Whether a patched program leaves more of the text's quantities unused than the program
    before the patch (then the earlier optimum stands)."""
    return len(unused(reading, patched)) > len(unused(reading, original))


_SENSES = {"maximize": "maximize", "minimize": "minimize", -1: "maximize", 1: "minimize"}


def _objective_sense(tree: ast.Module, sense: Sense, fixes: list[str]) -> None:
    """Give the program's one objective the sense the problem asks for. A small model often
    writes ``sense=maximize`` for "the minimum cost" (or leaves out ``sense=`` for a profit,
    which Pyomo minimizes): the solver then reports unbounded, or the wrong extreme. Left alone
    when there are several objectives, or the sense is set in a form not recognised here."""
    objectives = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and call_name(n) == "Objective"]
    if len(objectives) != 1 or any(isinstance(n, ast.Attribute) and n.attr == "sense"
                                   and isinstance(n.ctx, ast.Store) for n in ast.walk(tree)):
        return
    call = objectives[0]
    given = next((k for k in call.keywords if k.arg == "sense"), None)
    written: str | None
    if given is None:
        written = "minimize"  # Pyomo's default
    else:
        node = given.value
        key = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else \
            node.value if isinstance(node, ast.Constant) else None
        written = _SENSES.get(key) if isinstance(key, (str, int)) else None
        if written is None:
            return
    if written == sense:
        return
    module = call.func.value if isinstance(call.func, ast.Attribute) else None
    value = ast.Attribute(value=module, attr=sense, ctx=ast.Load()) if module is not None \
        else ast.Name(id=sense, ctx=ast.Load())
    call.keywords = [k for k in call.keywords if k.arg != "sense"] + [ast.keyword(arg="sense", value=value)]
    fixes.append(f"set the objective's sense to {sense}, as the problem asks"
                 + (" (it had none, and Pyomo minimizes by default)" if given is None else f" (it said {written})"))


_TURNED = {ast.LtE: ast.GtE, ast.GtE: ast.LtE}


def _bound_directions(tree: ast.Module, bounds: Mapping[float, Relation], fixes: list[str]) -> None:
    """``expr <= 2000`` where the text says "at least 2000" (and the like): the relation is
    turned around. Only a constraint with one relation between an expression and a plain number
    is looked at, and only numbers the text states once, with one direction."""
    turned = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and call_name(node) in ("Constraint", "add")):
            continue
        for relation in [*node.args, *(k.value for k in node.keywords if k.arg == "expr")]:
            if not (isinstance(relation, ast.Compare) and len(relation.ops) == 1 and type(relation.ops[0]) in _TURNED):
                continue
            left, right = number(relation.left), number(relation.comparators[0])
            if (left is None) == (right is None):
                continue
            value = right if right is not None else left
            says = isinstance(relation.ops[0], ast.LtE) == (right is not None)  # True: "expr <= number"
            wanted = bounds.get(value) if value is not None else None
            if wanted and (wanted == "<=") != says:
                relation.ops = [_TURNED[type(relation.ops[0])]()]
                turned.append(ast.unparse(relation))
    if turned:
        fixes.append("turned around the relation the text states for its number: " + "; ".join(turned))
