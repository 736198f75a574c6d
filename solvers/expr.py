"""Expression trees read from a model file: evaluate them at a plan, print them as text.

Trusted side: never runs model-written code; standard library only. A node is a tuple:
``("n", value)`` a number, ``("v", j)`` column ``j`` of the model file, ``("d", i)`` defined
expression ``i`` of an NL file, or ``(op, *children)`` with ``op`` one of ``OPERATORS``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

Node = tuple[Any, ...]

_UNARY: dict[str, Callable[[float], float]] = {
    "neg": lambda a: -a, "abs": abs, "floor": math.floor, "ceil": math.ceil, "sq": lambda a: a * a,
    "sqrt": math.sqrt, "exp": math.exp, "log": math.log, "log10": math.log10,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin, "acos": math.acos, "atan": math.atan,
    "sinh": math.sinh, "cosh": math.cosh, "tanh": math.tanh, "asinh": math.asinh, "acosh": math.acosh,
    "atanh": math.atanh, "not": lambda a: float(not a),
}
_BINARY: dict[str, Callable[[float, float], float]] = {
    "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b, "^": math.pow,
    "rem": math.fmod, "atan2": math.atan2, "less": lambda a, b: max(a - b, 0.0),
    "<": lambda a, b: float(a < b), "<=": lambda a, b: float(a <= b), "==": lambda a, b: float(a == b),
    ">=": lambda a, b: float(a >= b), ">": lambda a, b: float(a > b), "!=": lambda a, b: float(a != b),
}
_NARY: dict[str, Callable[[list[float]], float]] = {
    "+": math.fsum, "min": min, "max": max,
    "and": lambda xs: float(all(xs)), "or": lambda xs: float(any(xs)),
}
OPERATORS = frozenset({*_UNARY, *_BINARY, *_NARY, "if"})
_FUNCTIONS = frozenset(_UNARY) - {"neg", "sq", "not"} | {"atan2", "min", "max", "rem", "less"}
_COMPARISONS = frozenset({"<", "<=", "==", ">=", ">", "!="})


def evaluate(node: Node, x: Sequence[float], defined: dict[int, Any] | None = None) -> float:
    """Value of ``node`` at column values ``x``; math errors propagate (ValueError, OverflowError,
    ZeroDivisionError). ``defined`` maps defined-expression ids to ``(linear, node)``."""
    kind = node[0]
    if kind == "n":
        return float(node[1])
    if kind == "v":
        return float(x[node[1]])
    if kind == "d":
        linear, body = (defined or {})[node[1]]
        return math.fsum([c * x[j] for j, c in linear]) + (evaluate(body, x, defined) if body else 0.0)
    args = node[1:]
    if kind == "if":
        return evaluate(args[1] if evaluate(args[0], x, defined) else args[2], x, defined)
    values = [evaluate(a, x, defined) for a in args]
    if kind == "sqrt" and -1e-9 < values[0] < 0:  # a solver's plan may sit a hair below zero
        values[0] = 0.0
    if kind in _NARY:
        return float(_NARY[kind](values))
    if kind in _BINARY:
        return float(_BINARY[kind](values[0], values[1]))
    return float(_UNARY[kind](values[0]))


def variables_in(node: Node | None, defined: dict[int, Any] | None = None) -> set[int]:
    """Columns that ``node`` refers to (through defined expressions too)."""
    found: set[int] = set()
    todo = [node] if node is not None else []
    seen: set[int] = set()
    while todo:
        current = todo.pop()
        if current[0] == "v":
            found.add(current[1])
        elif current[0] == "d" and current[1] not in seen:
            seen.add(current[1])
            linear, body = (defined or {})[current[1]]
            found.update(j for j, c in linear if c)
            if body is not None:
                todo.append(body)
        elif current[0] != "n":
            todo.extend(current[1:])
    return found


def number(value: float) -> str:
    """A number as short text: ``10``, ``3.5``, ``-1``, ``1e+20``."""
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def linear_sum(terms: Sequence[tuple[int, float]], tail: Sequence[Node] = (), constant: float = 0.0) -> Node:
    """A sum node for ``tail`` nodes, then ``coef * column`` terms, then a constant (zeros dropped)."""
    parts: list[Node] = list(tail)
    for j, c in terms:
        if c == 1:
            parts.append(("v", j))
        elif c == -1:
            parts.append(("neg", ("v", j)))
        elif c:
            parts.append(("*", ("n", c), ("v", j)))
    if constant:
        parts.append(("n", constant))
    if not parts:
        return ("n", 0.0)
    return parts[0] if len(parts) == 1 else ("+", *parts)


def render(node: Node, names: Sequence[str], defined: dict[int, Any] | None = None) -> str:
    """The expression as Pyomo prints it: ``3*x + y``, ``x*y``, ``sqrt(x) - 2*y``, ``x**2``."""
    return _render(node, names, defined or {})[0]


def _render(node: Node, names: Sequence[str], defined: dict[int, Any]) -> tuple[str, int]:
    """Text and precedence: 0 logic/comparison, 1 sum, 2 product, 3 unary minus, 4 power, 5 atom."""
    kind, args = node[0], node[1:]
    if kind == "n":
        return number(float(node[1])), 5
    if kind == "v":
        return names[node[1]], 5
    if kind == "d":
        linear, body = defined[node[1]]
        return "(" + _render(linear_sum(linear, [body] if body else []), names, defined)[0] + ")", 5
    parts = [_render(a, names, defined) for a in args]

    def wrap(i: int, below: int) -> str:
        text, prec = parts[i]
        return f"({text})" if prec < below else text

    if kind == "+":
        out = wrap(0, 1)
        for i in range(1, len(parts)):
            text = wrap(i, 1)
            out += " - " + text[1:] if text.startswith("-") else " + " + text
        return out, 1
    if kind == "-":
        return f"{wrap(0, 1)} - {wrap(1, 2)}", 1
    if kind == "*":
        right = wrap(1, 2)
        return f"{wrap(0, 2)}*{'(' + right + ')' if right.startswith('-') else right}", 2
    if kind == "/":
        right = wrap(1, 3)
        return f"{wrap(0, 2)}/{'(' + right + ')' if right.startswith('-') else right}", 2
    if kind == "neg":
        text = wrap(0, 2)
        return "-" + (f"({text})" if text.startswith("-") else text), 3
    if kind in ("^", "sq"):
        base = wrap(0, 5)
        base = f"({base})" if base.startswith("-") else base
        exponent = "2" if kind == "sq" else wrap(1, 5)
        return f"{base}**{'(' + exponent + ')' if exponent.startswith('-') else exponent}", 4
    if kind in _COMPARISONS:
        return f"{wrap(0, 1)} {kind} {wrap(1, 1)}", 0
    if kind in ("and", "or"):
        return f" {kind} ".join(wrap(i, 1) for i in range(len(parts))), 0
    if kind == "not":
        return f"not {wrap(0, 1)}", 0
    if kind == "if":
        return f"Expr_if({parts[0][0]}, {parts[1][0]}, {parts[2][0]})", 5
    if kind in _FUNCTIONS:
        return f"{kind}({', '.join(text for text, _ in parts)})", 5
    raise ValueError(f"unknown operator {kind!r}")


def degree(node: Node | None, defined: dict[int, Any] | None = None) -> int | None:
    """Polynomial degree of ``node`` (0 for a constant), None when it is not a polynomial."""
    if node is None:
        return 0
    kind, args = node[0], node[1:]
    if kind == "n":
        return 0
    if kind == "v":
        return 1
    if kind == "d":
        linear, body = (defined or {})[node[1]]
        inner = degree(body, defined)
        return None if inner is None else max(inner, 1 if any(c for _, c in linear) else 0)
    maybe = [degree(a, defined) for a in args]
    if None in maybe:
        return None
    parts = [d for d in maybe if d is not None]
    if kind in ("+", "-", "neg"):
        return max(parts)
    if kind == "*":
        return sum(parts)
    if kind == "sq":
        return 2 * parts[0]
    if kind == "/":
        return parts[0] if parts[1] == 0 else None
    if kind == "^" and parts[1] == 0:
        exponent = evaluate(args[1], [], defined)
        if exponent >= 0 and exponent == int(exponent):
            return parts[0] * int(exponent)
        return 0 if parts[0] == 0 else None
    return 0 if all(p == 0 for p in parts) else None
