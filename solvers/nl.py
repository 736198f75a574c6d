"""Read an AMPL NL file (text form, as Pyomo writes it) into a ``FileModel``; trusted side.

Supports what Pyomo's NL writer emits for one objective: the header, C/O/V expression
segments, r/b bounds, J/G linear parts, and skips x/d/k/S. Complementarity, external
functions, logical constraints and binary NL are refused with ``NLError``. Columns are named
``v<j>`` and rows ``c<i>``, the symbols Pyomo's symbol map uses. Variable kinds follow the
NL ordering rule: the last ``nlvbi``/``nlvci``/``nlvoi`` of the three nonlinear groups and
the last ``nbv + niv`` columns overall are integer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

try:
    from solvers.model_file import INF, Column, FileModel, Row
except ImportError:  # inside the sandbox the modules are top-level
    from model_file import INF, Column, FileModel, Row  # type: ignore[no-redef]

_OPCODES: dict[int, tuple[str, int]] = {  # opcode -> (operator, arity); -1: a count line follows
    0: ("+", 2), 1: ("-", 2), 2: ("*", 2), 3: ("/", 2), 4: ("rem", 2), 5: ("^", 2), 6: ("less", 2),
    11: ("min", -1), 12: ("max", -1), 13: ("floor", 1), 14: ("ceil", 1), 15: ("abs", 1), 16: ("neg", 1),
    20: ("or", 2), 21: ("and", 2), 22: ("<", 2), 23: ("<=", 2), 24: ("==", 2), 28: (">=", 2), 29: (">", 2),
    30: ("!=", 2), 34: ("not", 1), 35: ("if", 3), 37: ("tanh", 1), 38: ("tan", 1), 39: ("sqrt", 1),
    40: ("sinh", 1), 41: ("sin", 1), 42: ("log10", 1), 43: ("log", 1), 44: ("exp", 1), 45: ("cosh", 1),
    46: ("cos", 1), 47: ("atanh", 1), 48: ("atan2", 2), 49: ("atan", 1), 50: ("asinh", 1), 51: ("asin", 1),
    52: ("acosh", 1), 53: ("acos", 1), 54: ("+", -1), 70: ("and", -1), 71: ("or", -1),
    76: ("^", 2), 77: ("sq", 1), 78: ("^", 2),
}


class NLError(ValueError):
    """The file is not an NL model this reader supports."""


def read_nl(path: str) -> FileModel:
    """Parse the NL file at ``path``."""
    with open(path, encoding="ascii", errors="replace") as f:
        return _Reader(f.read().splitlines()).model()


class _Reader:
    def __init__(self, lines: list[str]) -> None:
        self.lines: Iterator[str] = (line.split("#", 1)[0].strip() for line in lines)
        self.defined: dict[int, Any] = {}

    def next(self) -> str:
        for line in self.lines:
            if line:
                return line
        raise NLError("unexpected end of the NL file")

    def numbers(self, count: int) -> list[float]:
        values = [float(t) for t in self.next().split()]
        if len(values) < count:
            raise NLError("short header line in the NL file")
        return values

    def model(self) -> FileModel:
        first = self.next()
        if not first.startswith("g"):
            raise NLError("only text NL files (header 'g') are read")
        n_vars, n_cons, n_objs = (int(v) for v in self.numbers(3)[:3])
        header = [self.numbers(2), self.numbers(2), self.numbers(3), self.numbers(2),
                  self.numbers(5), self.numbers(2), self.numbers(2), self.numbers(5)]
        if len(header[0]) > 2 and any(header[0][2:4]):
            raise NLError("complementarity constraints are not supported")
        if header[3][1]:
            raise NLError("external (imported) functions are not supported")
        if n_objs != 1:
            raise NLError(f"the NL file has {n_objs} objectives; exactly one is required")
        self.n_vars = n_vars
        nlvc, nlvo, nlvb = (int(v) for v in header[2][:3])
        integer = _integer_columns(n_vars, nlvc, nlvo, nlvb, [int(v) for v in header[4][:5]])
        lower, upper = [-INF] * n_vars, [INF] * n_vars
        rows = [Row(f"c{i}", []) for i in range(n_cons)]
        objective, sense = Row("o0", []), "minimize"
        for line in self.lines:
            if not line:
                continue
            key, rest = line[0], line[1:].split()
            if key == "C":
                rows[self.index(rest[0], n_cons)].expr = self.expression_or_none()
            elif key == "O":
                self.index(rest[0], 1)
                sense = "maximize" if rest[1:] and rest[1] == "1" else "minimize"
                objective.expr = self.expression_or_none()
            elif key == "V":
                i, count = int(rest[0]), int(rest[1])
                linear = [self.term() for _ in range(count)]
                self.defined[i] = (linear, self.expression_or_none())
            elif key in "xdk":
                for _ in range(int(rest[0])):
                    self.next()
            elif key == "S":
                for _ in range(int(rest[1])):
                    self.next()
            elif key == "r":
                for row in rows:
                    row.lb, row.ub = self.bounds()
            elif key == "b":
                for j in range(n_vars):
                    lower[j], upper[j] = self.bounds()
            elif key in "JG":
                i, count = int(rest[0]), int(rest[1])
                target = rows[self.index(str(i), n_cons)] if key == "J" else objective
                target.linear = [self.term() for _ in range(count)]
            else:
                raise NLError(f"unsupported NL segment {line[:20]!r}")
        for row in [*rows, objective]:
            row.linear = [(j, c) for j, c in row.linear if c]
        columns = [Column(f"v{j}", lower[j], upper[j], j in integer) for j in range(n_vars)]
        return FileModel("nl", columns, rows, objective, sense, defined=self.defined)

    def index(self, text: str, count: int) -> int:
        i = int(text)
        if not 0 <= i < count:
            raise NLError(f"index {i} out of range in the NL file")
        return i

    def term(self) -> tuple[int, float]:
        j, c = self.next().split()[:2]
        return self.index(j, self.n_vars), float(c)

    def bounds(self) -> tuple[float, float]:
        parts = self.next().split()
        code, values = parts[0], [float(v) for v in parts[1:]]
        if code == "0":
            return values[0], values[1]
        if code == "1":
            return -INF, values[0]
        if code == "2":
            return values[0], INF
        if code == "3":
            return -INF, INF
        if code == "4":
            return values[0], values[0]
        raise NLError(f"unsupported bound code {code!r} (complementarity?)")

    def expression_or_none(self) -> Any:
        node = self.expression()
        return None if node == ("n", 0.0) else node

    def expression(self) -> Any:
        """One expression in prefix form (iterative, so deep trees do not hit the recursion limit)."""
        stack: list[list[Any]] = []  # [operator, arity, children]
        while True:
            token = self.next()
            kind, body = token[0], token[1:]
            node: Any
            if kind == "n":
                node = ("n", float(body))
            elif kind == "v":
                i = int(body)
                if i < self.n_vars:
                    node = ("v", i)
                elif i in self.defined:
                    node = ("d", i)
                else:
                    raise NLError(f"unknown variable v{i} in the NL file")
            elif kind == "o":
                op, arity = _OPCODES.get(int(body), (None, 0))
                if op is None:
                    raise NLError(f"unsupported NL operator o{body}")
                if arity < 0:
                    arity = int(self.next())
                stack.append([op, arity, []])
                continue
            else:
                raise NLError(f"unsupported NL expression token {token[:20]!r}")
            while True:
                if not stack:
                    return node
                stack[-1][2].append(node)
                if len(stack[-1][2]) < stack[-1][1]:
                    break
                op, _, children = stack.pop()
                node = (op, *children)


def _integer_columns(n: int, nlvc: int, nlvo: int, nlvb: int, discrete: list[int]) -> set[int]:
    """Integer columns by the NL variable ordering (see the module docstring)."""
    nbv, niv, nlvbi, nlvci, nlvoi = discrete
    integer = set(range(n - nbv - niv, n))
    groups = [(0, nlvb, nlvbi), (nlvb, nlvc, nlvci), (nlvc, max(nlvc, nlvo), nlvoi)]  # objective-only: [nlvc, nlvo)
    for start, end, count in groups:
        integer.update(range(max(start, end - count), end))
    return {j for j in integer if 0 <= j < n}
