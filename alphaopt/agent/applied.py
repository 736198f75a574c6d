"""Insights the code applies: a lesson whose condition quotes the text and whose example is one
relation edit is carried out on the program where that quote matches, without asking the model.

A learned known edit (``alphaopt.learning.variants.known_edit``) has a condition such as
``when the text says "a daily requirement of N calories"`` and an example such as
``wrong: ... <= 2000 right: ... >= 2000``. Both are plain data of the library; this module only
reads them: ``edits`` matches each recalled insight's quote against the problem (N stands for any
number, which it captures), and ``apply`` turns the relation of every constraint that bounds an
expression by one of the captured numbers (written out, or through a name, a ``Param`` or a dict
entry the program sets to it once) the way the example turns it. A model that follows the
lesson writes the relation so already, and nothing changes; a model that does not (the embedded
one often ignores a lesson in its prompt) gets the edit all the same. The check that verifies an
insight solves through the same path, so an insight is verified for what it does here.

An edit is left out where the text states that number as a bound the other way ("at most 2000")
or the program writes it in no constraint: the library's quote never overrides the text.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from alphaopt.agent.program import call_name, number
from alphaopt.agent.reading import Relation

Target = Literal[">=", "<=", "=="]

_QUOTE = re.compile(r'\bthe text says\s+"([^"]{3,300})"', re.IGNORECASE)
_NUMBER = r"(\d+(?:,\d{3})*(?:\.\d+)?)"
_OPS: dict[type, Target] = {ast.GtE: ">=", ast.LtE: "<=", ast.Eq: "=="}
_NODES: dict[str, type[ast.cmpop]] = {">=": ast.GtE, "<=": ast.LtE, "==": ast.Eq}
_MIRROR: dict[Target, Target] = {">=": "<=", "<=": ">=", "==": "=="}


class Edit(BaseModel):
    """One insight's edit, matched in a problem: make every constraint that bounds an expression
    by one of ``numbers`` read ``expression <to> number``."""

    model_config = ConfigDict(frozen=True)

    insight_id: str
    to: Target
    numbers: tuple[float, ...]
    quote: str


def quoted_condition(words: str) -> str:
    """The condition that quotes these words of a text (``quote`` reads it back)."""
    return f'when the text says "{words}"'


def quote(condition: str) -> str | None:
    """The words a condition quotes from the text (``when the text says "..."``), else None."""
    found = _QUOTE.search(condition)
    return found.group(1).strip() if found else None


def pattern(quoted: str) -> re.Pattern[str]:
    """The quote as a pattern over a problem's text: its words in order, any spacing and case
    between them, each N any number (captured; "N%" also "N percent")."""
    parts = []
    for word in quoted.split():
        pieces = re.split(r"\bN\b", word)
        parts.append(_NUMBER.join(re.escape(p).replace("%", r"\s*(?:%|percent)") for p in pieces))
    return re.compile(r"(?<![\w.])" + r"\s+".join(parts) + r"(?![\w])", re.IGNORECASE)


def relation_edit(example: str) -> Target | None:
    """The relation an example turns a bound into, written ``expression <op> number``: its wrong
    and right parts must each hold one relation between the same expression and a number, with
    different operators. None for any other example."""
    parts = re.fullmatch(r"\s*wrong:\s*(.*?)\s+right:\s*(.*?)\s*", example, re.DOTALL)
    if parts is None:
        return None
    wrong, right = (_bound(p) for p in parts.groups())
    if wrong is None or right is None or wrong[0] != right[0] or wrong[2] != right[2] or wrong[1] == right[1]:
        return None
    return right[1]


def bound_of(code: str) -> tuple[Target, float] | None:
    """The operator and the number of the one relation ``expression <op> number`` in a line of
    code (the number on the right), else None."""
    found = _bound(code)
    return None if found is None else (found[1], found[2])


def _bound(code: str) -> tuple[str, Target, float] | None:
    """``(expression, operator, number)`` of the one relation in a line of code, the number on
    the right; None unless there is exactly one such relation."""
    try:
        tree = ast.parse(code.strip())
    except SyntaxError:
        return None
    found = [b for node in ast.walk(tree) if isinstance(node, ast.Compare) and (b := _as_bound(node, {})) is not None]
    if len(found) != 1:
        return None
    expression, op, number = found[0]
    return ast.dump(expression), op, number


def _as_bound(node: ast.Compare, constants: Mapping[str, float]) -> tuple[ast.expr, Target, float] | None:
    """A relation ``expression <op> number`` (or ``number <op> expression``, mirrored)."""
    if len(node.ops) != 1 or type(node.ops[0]) not in _OPS:
        return None
    op = _OPS[type(node.ops[0])]
    left, right = _value(node.left, constants), _value(node.comparators[0], constants)
    if right is not None and left is None:
        return node.left, op, right
    if left is not None and right is None:
        return node.comparators[0], _MIRROR[op], left
    return None


def _value(node: ast.expr, constants: Mapping[str, float]) -> float | None:
    """A plain number, a negated one, or a name the program sets to a number once (``need``,
    ``model.need`` set to ``Param(initialize=2000)``, or ``needs["calories"]`` of a dict
    written out; ``_constants``)."""
    if isinstance(node, (ast.Name, ast.Attribute, ast.Subscript)):
        return constants.get(ast.unparse(node))
    return number(node)


def edits(insights: Iterable[Mapping[str, Any]], problem: str) -> list[Edit]:
    """The edits of the recalled insights that apply to this problem: an insight whose condition
    quotes the text, whose quote matches the problem, and whose example is one relation edit."""
    found = []
    for insight in insights:
        quoted = quote(str(insight.get("condition", "")))
        to = relation_edit(str(insight.get("example", "")))
        if quoted is None or to is None:
            continue
        numbers = tuple(dict.fromkeys(float(n.replace(",", "")) for m in pattern(quoted).finditer(problem)
                                      for n in m.groups() if n))
        if numbers:
            found.append(Edit(insight_id=str(insight["id"]), to=to, numbers=numbers, quote=quoted))
    return found


def apply(tree: ast.Module, found: Iterable[Edit], bounds: Mapping[float, Relation], fixes: list[str]) -> None:
    """Carry out the edits on a parsed program: every constraint (a ``Constraint`` or ``add``
    call's relation, or a rule's returned relation) that bounds an expression by one of an
    edit's numbers is turned to the edit's relation, unless the text states that number as a
    bound the other way (``bounds``, ``reading.Reading.bounds``). Each change is named in
    ``fixes`` with the insight it came from."""
    constants = _constants(tree)
    relations = list(_relations(tree))
    for edit in found:
        turned = []
        for node in relations:
            bound = _as_bound(node, constants)
            if bound is None or bound[2] not in edit.numbers or bound[1] == edit.to:
                continue
            if edit.to != "==" and bounds.get(bound[2], edit.to) != edit.to:
                continue
            number_first = bound[0] is not node.left  # "2000 <= expression"
            node.ops = [_NODES[_MIRROR[edit.to] if number_first else edit.to]()]
            turned.append(ast.unparse(node))
        if turned:
            fixes.append(f'applied insight {edit.insight_id} (the text says "{edit.quote}"): ' + "; ".join(turned))


def _relations(tree: ast.Module) -> Iterable[ast.Compare]:
    """The program's constraint relations: a ``Constraint``/``add`` call's relation (or its
    lambda rule's), or one a function returns (a constraint rule)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and call_name(node) in ("Constraint", "add"):
            for value in [*node.args, *(k.value for k in node.keywords if k.arg in ("expr", "rule"))]:
                if isinstance(value, ast.Lambda):
                    value = value.body
                if isinstance(value, ast.Compare):
                    yield value
        elif isinstance(node, ast.FunctionDef):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Return) and isinstance(sub.value, ast.Compare):
                    yield sub.value


def _constants(tree: ast.Module) -> dict[str, float]:
    """The numbers the program names, by how it writes them (``_value``): a name or attribute
    assigned once, to a number or a ``Param`` initialized with one, and each entry of a dict
    of numbers assigned once to a name."""
    counts: dict[str, int] = {}
    values: dict[str, float] = {}
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            if not isinstance(target, (ast.Name, ast.Attribute)):
                continue
            name = ast.unparse(target)
            counts[name] = counts.get(name, 0) + 1
            if isinstance(node, ast.Assign):
                values.update(_named(name, node.value))
    return {key: value for key, value in values.items() if counts[key.split("[", 1)[0]] == 1}


def _named(name: str, value: ast.expr) -> dict[str, float]:
    """What one assignment ``name = value`` names: a number, a ``Param(initialize=number)``, or a
    dict's numbers by their constant keys."""
    if isinstance(value, ast.Call) and call_name(value) == "Param":
        value = next((k.value for k in value.keywords if k.arg == "initialize"), ast.Constant(None))
    if isinstance(value, ast.Dict):
        return {f"{name}[{key.value!r}]": number for key, item in zip(value.keys, value.values, strict=True)
                if isinstance(key, ast.Constant) and (number := _value(item, {})) is not None}
    number = _value(value, {})
    return {} if number is None else {name: number}
