"""Single-line edits of a program, made mechanically, for the solver to screen.

Exploration runs each variant of a wrong program and keeps one whose solved objective hits the
target: its one-line diff is then a precise "wrong -> right" example for the insight. The
variants change one thing each: one constraint's direction (``<=``/``>=``, or an equality made
an inequality), the objective's sense, the integrality of one variable, or one constraint
dropped. ``hunks`` splits a model's corrected program into its separate changes, so that the
smallest change that reaches the target can be found the same way, and ``known_edit`` names the
one mechanical edit (or one added constraint) that turns a wrong program into a right one, when
that is all that separates them (``known_edits``: the few such edits, when each change is one).

Edits are made on the program's text at the positions ``ast`` gives, so every other line stays
byte for byte as the model wrote it.
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from alphaopt.agent.applied import bound_of, pattern
from alphaopt.agent.reading import Reading

#: Domains a variable's integrality flip maps between (binary variables are left alone).
_TO_INTEGERS = {"NonNegativeReals": "NonNegativeIntegers", "PositiveReals": "PositiveIntegers",
                "NonPositiveReals": "NonPositiveIntegers", "NegativeReals": "NegativeIntegers", "Reals": "Integers"}
_TO_REALS = {v: k for k, v in _TO_INTEGERS.items()}
_TURNED = {ast.LtE: ">=", ast.GtE: "<=", ast.Lt: ">", ast.Gt: "<"}
_OPS = {ast.LtE: "<=", ast.GtE: ">=", ast.Lt: "<", ast.Gt: ">", ast.Eq: "=="}
_SENSES = {"maximize": "minimize", "minimize": "maximize"}


@dataclass(frozen=True)
class Variant:
    """One mechanical edit: what kind, what it changed (in words), the code before and after it,
    and the whole edited program."""

    kind: str  # "sense", "count", "integrality", "direction", "equality", "number", "drop" or "missing"
    change: str
    before: str
    after: str
    program: str
    edit: tuple[int, int, str] = (0, 0, "")  # the text from ``start`` to ``end`` replaced by this

    @property
    def example(self) -> str:
        """The edit as an insight's example: ``wrong: <code> right: <code>``."""
        return (f"wrong: {_one_line(self.before) or '(missing)'} "
                f"right: {_one_line(self.after) or '(no such constraint)'}")


def line_variants(program: str, problem: str = "", *, limit: int = 60, numbers_per_literal: int = 12) -> list[Variant]:
    """The program's single-line variants, at most ``limit``: the objective's sense first, then
    the objective as a plain count of its terms (a weighted sum of two or more decisions with
    every weight made 1), each variable's integrality, each constraint's direction, each equality relaxed both ways,
    each number the program writes that the ``problem`` text does not state replaced by one it
    states (up to ``numbers_per_literal`` each), and each constraint dropped. None when the
    program does not parse."""
    try:
        tree = ast.parse(program)
    except SyntaxError:
        return []
    text = _Text(program)
    found = [*_senses(tree, text), *_counts(tree, text), *_integralities(tree, text), *_directions(tree, text),
             *_numbers(tree, text, problem, numbers_per_literal), *_drops(tree, text)]
    seen: set[str] = set()
    unique = []
    for variant in found:
        if variant.program != program and variant.program not in seen:
            seen.add(variant.program)
            unique.append(variant)
    return unique[:limit]


def against_text(variant: Variant, reading: Reading) -> bool:
    """Whether a variant turns the program against what the text says unambiguously
    (``alphaopt.agent.reading``): the objective turned away from the sense the text asks for, a
    constraint's relation to a number (or to a share of a total) turned against the bound the
    text states for it, or a constraint that writes such a bound as the text states it dropped. Such an edit that
    reaches the answer does so by coincidence (the answer of a "maximum flow" reached by
    minimizing with every flow at least its capacity), or by a label that reads the text
    otherwise; either way its lesson would contradict the text."""
    if variant.kind == "sense":
        sense = _sense_of(variant.after)
        return reading.sense is not None and sense is not None and sense != reading.sense
    if variant.kind in ("direction", "equality"):
        plain = bound_of(variant.after)
        bound, said = (plain, reading.bounds) if plain else (_share_of(variant.after, reading.shares), reading.shares)
        return bound is not None and bound[0] != "==" and said.get(bound[1], bound[0]) != bound[0]
    if variant.kind == "drop":  # a bound the text states, written as it says it, dropped
        bound = bound_of(variant.before)
        return bound is not None and reading.bounds.get(bound[1]) == bound[0]
    return False


def _share_of(code: str, shares: Mapping[float, str]) -> tuple[str, float] | None:
    """``(operator, share)`` of a relation that bounds something by a share the text states
    (``model.rb <= 0.4 * (model.pop + model.rb)``: the share on the right, or on the left with
    the operator mirrored), else None."""
    try:
        tree = ast.parse(code.strip())
    except SyntaxError:
        return None
    relation = next((n for n in ast.walk(tree) if isinstance(n, ast.Compare)), None)
    if relation is None or len(relation.ops) != 1 or type(relation.ops[0]) not in _OPS:
        return None
    op = _OPS[type(relation.ops[0])]

    def stated(side: ast.expr) -> set[float]:
        return {float(n.value) for n in ast.walk(side) if isinstance(n, ast.Constant)
                and isinstance(n.value, (int, float)) and any(_close(float(n.value), s) for s in shares)}

    left, right = stated(relation.left), stated(relation.comparators[0])
    if len(right) == 1 and not left:
        return op, next(s for s in shares if _close(s, next(iter(right))))
    if len(left) == 1 and not right:
        return {"<=": ">=", ">=": "<="}.get(op, op), next(s for s in shares if _close(s, next(iter(left))))
    return None


_SENSE_WORD = re.compile(r"\bsense\s*=\s*[\w.]*?(maximize|minimize)\b")
_SENSE_NUMBER = re.compile(r"\bsense\s*=\s*(-?)1\b")


def _sense_of(code: str) -> str | None:
    """The objective sense ``sense=...`` sets in a piece of code (Pyomo's -1 maximizes)."""
    word = _SENSE_WORD.search(code)
    if word:
        return word.group(1)
    number = _SENSE_NUMBER.search(code)
    return None if number is None else "maximize" if number.group(1) else "minimize"


class _Text:
    """The program's text, addressed by ``ast`` positions (line numbers from 1, byte columns)."""

    def __init__(self, program: str) -> None:
        self.program = program
        self.lines = program.splitlines(keepends=True)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def index(self, lineno: int, col: int) -> int:
        line = self.lines[lineno - 1] if lineno - 1 < len(self.lines) else ""
        return self.starts[lineno - 1] + len(line.encode()[:col].decode(errors="ignore"))

    def span(self, node: ast.AST) -> tuple[int, int]:
        return (self.index(node.lineno, node.col_offset),  # type: ignore[attr-defined]
                self.index(node.end_lineno, node.end_col_offset))  # type: ignore[attr-defined]

    def segment(self, node: ast.AST) -> str:
        start, end = self.span(node)
        return self.program[start:end]

    def replace(self, start: int, end: int, new: str) -> str:
        return self.program[:start] + new + self.program[end:]

    def variant(self, kind: str, change: str, before: str, after: str, start: int, end: int, new: str) -> Variant:
        return Variant(kind, change, before, after, self.replace(start, end, new), (start, end, new))


def _ctor(call: ast.Call) -> str | None:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def _prefix(call: ast.Call) -> str:
    """``pyo.`` for ``pyo.Objective(...)``, nothing for ``Objective(...)``."""
    func = call.func
    return ast.unparse(func.value) + "." if isinstance(func, ast.Attribute) else ""


def _target(tree: ast.Module, call: ast.Call) -> str:
    """The name a call is assigned to (``model.x``), or the call's own text."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and node.value is call and len(node.targets) == 1:
            return ast.unparse(node.targets[0])
    return ast.unparse(call)


def _senses(tree: ast.Module, text: _Text) -> list[Variant]:
    out = []
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call) and _ctor(n) == "Objective"):
        sense = next((kw for kw in call.keywords if kw.arg == "sense"), None)
        if sense is None:  # Pyomo's default is minimize
            at = text.index(call.end_lineno, call.end_col_offset) - 1  # type: ignore[arg-type]
            new = (", " if call.args or call.keywords else "") + f"sense={_prefix(call)}maximize"
            before = text.segment(call)
            out.append(text.variant("sense", "made the objective maximize (it minimized)", before,
                                    before[:-1] + new + ")", at, at, new))
            continue
        value = sense.value
        name = value.attr if isinstance(value, ast.Attribute) else value.id if isinstance(value, ast.Name) else None
        if isinstance(value, ast.Constant) and value.value in (1, -1):
            new = str(-value.value)
        elif isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.USub) and ast.unparse(value) == "-1":
            new = "1"
        elif name in _SENSES:
            new = ast.unparse(value)[: -len(name)] + _SENSES[name]
        else:
            continue
        out.append(text.variant("sense", f"turned the objective's sense ({ast.unparse(value)} to {new})",
                                text.segment(sense), f"sense={new}", *text.span(value), new))
    return out


def _counts(tree: ast.Module, text: _Text) -> list[Variant]:
    """An objective that weighs two or more decisions by numbers (``5 * model.x + 3 * model.y``)
    made their plain count (``model.x + model.y``): a question that asks for a number of things
    counts them, whatever each weighs."""
    out = []
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call) and _ctor(n) == "Objective"):
        expr = next((kw.value for kw in call.keywords if kw.arg == "expr"), call.args[0] if call.args else None)
        terms = _weighted_terms(expr) if expr is not None else None
        if expr is None or not terms or len(terms) < 2 or all(weight == 1 for weight, _ in terms):
            continue
        new = " + ".join(ast.unparse(decision) for _, decision in terms)
        out.append(text.variant("count", "made the objective the plain count of its decisions (every weight 1)",
                                text.segment(expr), new, *text.span(expr), new))
    return out


def _weighted_terms(expr: ast.expr) -> list[tuple[float, ast.expr]] | None:
    """``expr`` as a sum of ``number * decision`` terms (either order; a decision alone weighs 1),
    a decision being a name, attribute or subscript; None for anything else."""
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
        left, right = _weighted_terms(expr.left), _weighted_terms(expr.right)
        return None if left is None or right is None else left + right
    if isinstance(expr, (ast.Name, ast.Attribute, ast.Subscript)):
        return [(1.0, expr)]
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Mult):
        for weight, decision in ((expr.left, expr.right), (expr.right, expr.left)):
            if (isinstance(weight, ast.Constant) and isinstance(weight.value, (int, float))
                    and not isinstance(weight.value, bool) and weight.value > 0
                    and isinstance(decision, (ast.Name, ast.Attribute, ast.Subscript))):
                return [(float(weight.value), decision)]
    return None


def _integralities(tree: ast.Module, text: _Text) -> list[Variant]:
    out = []
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call) and _ctor(n) == "Var"):
        name = _target(tree, call)
        domain = next((kw for kw in call.keywords if kw.arg in ("domain", "within")), None)
        if domain is None:  # Pyomo's default domain is Reals
            at = text.index(call.end_lineno, call.end_col_offset) - 1  # type: ignore[arg-type]
            new = (", " if call.args or call.keywords else "") + f"domain={_prefix(call)}Integers"
            before = text.segment(call)
            out.append(text.variant("integrality", f"made {name} integer", before, before[:-1] + new + ")",
                                    at, at, new))
            continue
        value = domain.value
        current = value.attr if isinstance(value, ast.Attribute) else value.id if isinstance(value, ast.Name) else None
        if current in _TO_INTEGERS:
            flipped, word = _TO_INTEGERS[current], "integer"
        elif current in _TO_REALS:
            flipped, word = _TO_REALS[current], "continuous"
        else:
            continue
        new = ast.unparse(value)[: -len(current)] + flipped
        out.append(text.variant("integrality", f"made {name} {word}", f"{domain.arg}={ast.unparse(value)}",
                                f"{domain.arg}={new}", *text.span(value), new))
    return out


def _constraint_expressions(tree: ast.Module) -> list[ast.Compare]:
    """Comparisons that are constraints: a ``Constraint(expr=...)`` argument, a
    ``ConstraintList.add(...)`` argument, or what a rule function (or lambda) returns."""
    found: list[ast.Compare] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _ctor(node) in ("Constraint", "add"):
            found += [a for a in [*node.args, *(kw.value for kw in node.keywords if kw.arg in ("expr", "rule"))]
                      if isinstance(a, ast.Compare)]
            lambdas = [kw.value for kw in node.keywords if kw.arg == "rule" and isinstance(kw.value, ast.Lambda)]
            found += [f.body for f in lambdas if isinstance(f.body, ast.Compare)]
        elif isinstance(node, ast.FunctionDef) and node.name != "build_model":
            found += [n.value for n in ast.walk(node) if isinstance(n, ast.Return) and isinstance(n.value, ast.Compare)]
    return [c for c in found if len(c.ops) == 1 and type(c.ops[0]) in _OPS]


def _directions(tree: ast.Module, text: _Text) -> list[Variant]:
    out = []
    for compare in _constraint_expressions(tree):
        op = type(compare.ops[0])
        gap_start = text.index(compare.left.end_lineno, compare.left.end_col_offset)  # type: ignore[arg-type]
        gap_end = text.index(compare.comparators[0].lineno, compare.comparators[0].col_offset)
        at = text.program[gap_start:gap_end].find(_OPS[op])
        if at < 0:
            continue
        start, end = gap_start + at, gap_start + at + len(_OPS[op])
        before = text.segment(compare)
        first, last = text.span(compare)
        for new in [_TURNED[op]] if op in _TURNED else ["<=", ">="]:
            after = text.replace(start, end, new)[first:last + len(new) - len(_OPS[op])]
            out.append(text.variant("direction" if op in _TURNED else "equality",
                                    f"turned {_OPS[op]} into {new} in {_one_line(before)}", before, after,
                                    start, end, new))
    return out


_TEXT_NUMBER = re.compile(r"(?<![\w.])(\d+(?:,\d{3})*(?:\.\d+)?)(\s*%|\s*percent)?")


def text_numbers(problem: str) -> list[float]:
    """The numbers a problem text states, in order, once each; a percentage also as a fraction."""
    found: list[float] = []
    for number, percent in _TEXT_NUMBER.findall(problem):
        value = float(number.replace(",", ""))
        for v in ([value, value / 100] if percent else [value]):
            if v not in found:
                found.append(v)
    return found


_CODE_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?")
_SENTENCE_END = re.compile(r"[.?!;:](?=\s|$)|\n")


def text_phrase(problem: str, code: str, *, before: int = 5, after: int = 4, widest: int = 8) -> str:
    """The words of ``problem`` around a number that the line of ``code`` also writes (0 and 1
    aside; a percentage also as its fraction), the code's last such number first (a bound is
    written last): up to ``before`` words before it and ``after`` after it, within its sentence
    and its clause (between commas), every number written N. Where those words match elsewhere
    in the problem too (a requirement "and 1537 calories" beside foods "and 275 calories"), the
    words before reach back across commas, up to ``widest`` within the sentence, until the quote
    matches only here. "" when they share none."""
    occurrences = [(m, float(m.group(1).replace(",", ""))) for m in _TEXT_NUMBER.finditer(problem)]
    for number in reversed([float(n) for n in _CODE_NUMBER.findall(code)]):
        if number in (0.0, 1.0):
            continue
        found = next((m for m, value in occurrences
                      if number in ({value, value / 100} if m.group(2) else {value})), None)
        if found is None:
            continue
        start = max((m.end() for m in _SENTENCE_END.finditer(problem, 0, found.start())), default=0)
        end = next((m.start() for m in _SENTENCE_END.finditer(problem, found.end())), len(problem))
        words = problem[start:found.start()].split()
        head = " ".join(words[-before:]).rsplit(",", 1)[-1].strip()
        tail = " ".join(problem[found.end():end].split()[:after]).split(",", 1)[0].strip()
        heads = [head] + [" ".join(words[-n:]) for n in range(len(head.split()) + 1, min(len(words), widest) + 1)]
        phrases = [_as_quote(f"{h} N{'%' if found.group(2) else ''} {tail}") for h in heads]
        return next((q for q in phrases if len(pattern(q).findall(problem)) == 1), phrases[0])
    return ""


def _as_quote(phrase: str) -> str:
    """A phrase of the text with every number written N (a percentage N%)."""
    return _TEXT_NUMBER.sub(lambda m: "N" + ("%" if m.group(2) else ""), phrase).strip(" ,;:")


def _numbers(tree: ast.Module, text: _Text, problem: str, per_literal: int) -> list[Variant]:
    """Each number the program writes that the text does not state (0 and 1 aside) replaced by
    each number the text states: a coefficient copied wrong or computed wrong."""
    stated = text_numbers(problem)
    out = []
    build = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "build_model"), tree)
    for node in ast.walk(build):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, (int, float)) or isinstance(
                node.value, bool):
            continue
        value = float(node.value)
        if value in (0.0, 1.0) or any(_close(value, s) for s in stated):
            continue
        before = text.segment(node)
        for number in [s for s in stated if not _close(s, value)][:per_literal]:
            new = f"{number:g}" if abs(number) < 1e15 else repr(number)
            out.append(text.variant("number", f"wrote {new} where the program had {before}", before, new,
                                    *text.span(node), new))
    return out


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def _drops(tree: ast.Module, text: _Text) -> list[Variant]:
    """Each constraint statement (``model.c = Constraint(...)`` or ``....add(...)``) replaced by
    ``pass`` when it stands on lines of its own."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and _ctor(node.value) == "Constraint":
            stmt: ast.stmt = node
        elif (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and _ctor(node.value) == "add"
              and any(isinstance(a, ast.Compare) for a in node.value.args)):
            stmt = node
        else:
            continue
        end_line, end_col = stmt.end_lineno or stmt.lineno, stmt.end_col_offset or 0
        head = text.lines[stmt.lineno - 1].encode()[:stmt.col_offset].decode(errors="ignore")
        tail = text.lines[end_line - 1].encode()[end_col:].decode(errors="ignore")
        if head.strip() or (tail.strip() and not tail.strip().startswith("#")):
            continue  # shares its line with other code
        before = text.segment(stmt)
        start, end = text.starts[stmt.lineno - 1], text.starts[end_line]
        out.append(text.variant("drop", f"dropped the constraint {_one_line(before)}", before, "",
                                start, end, f"{head}pass\n"))
    return out


def combine(program: str, first: Variant, second: Variant) -> str | None:
    """The program with two variants' edits made together; None when they overlap."""
    (a0, a1, a_new), (b0, b1, b_new) = sorted([first.edit, second.edit])
    if a1 > b0 or (a0 == a1 == b0 == b1):
        return None
    return program[:a0] + a_new + program[a1:b0] + b_new + program[b1:]


def hunks(wrong: str, right: str) -> list[tuple[int, int, list[str]]]:
    """The separate changes that turn ``wrong`` into ``right``, line by line: ``(first, last,
    new lines)`` each, replacing ``wrong``'s lines ``first`` to ``last - 1`` (kept line endings)."""
    a, b = wrong.splitlines(keepends=True), right.splitlines(keepends=True)
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    return [(i1, i2, b[j1:j2]) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def apply_hunk(wrong: str, hunk: tuple[int, int, list[str]]) -> str:
    """``wrong`` with one of its ``hunks`` applied."""
    lines = wrong.splitlines(keepends=True)
    first, last, new = hunk
    if new and not new[-1].endswith("\n") and last < len(lines):
        new = [*new[:-1], new[-1] + "\n"]
    return "".join([*lines[:first], *new, *lines[last:]])


def known_edit(wrong: str, right: str, problem: str = "") -> Variant | None:
    """The one edit that turns ``wrong`` into ``right``, when only one separates them (blank lines,
    comment lines and trailing spaces aside): constraint statements inserted in one place (kind
    ``missing``) or deleted from one place (kind ``drop``), or a single-line variant of ``wrong``
    (``line_variants``) whose program is ``right``. None for anything else: several changes, a
    rewritten line, a program that does not parse."""
    a, b = _stripped(wrong), _stripped(right)
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    changes = [(_code_lines(a[i1:i2]), _code_lines(b[j1:j2])) for tag, i1, i2, j1, j2 in matcher.get_opcodes()
               if tag != "equal"]
    changes = [(removed, added) for removed, added in changes if removed or added]  # blank lines, comments aside
    if len(changes) != 1:
        return None
    removed, added = changes[0]
    if added and not removed and all(_is_constraint(line) for line in added):
        code = "; ".join(added)
        return Variant("missing", f"added the constraint {code}", "", code, right)
    if removed and not added and all(_is_constraint(line) for line in removed):
        code = "; ".join(removed)
        return Variant("drop", f"dropped the constraint {code}", code, "", right)
    if len(removed) != 1 or len(added) != 1:
        return None  # a single-line variant changes one line into one line
    target = _same_lines(right)
    return next((v for v in line_variants(wrong, problem, limit=100_000) if _same_lines(v.program) == target), None)


def known_edits(wrong: str, right: str, problem: str = "", *, most: int = 3) -> list[Variant] | None:
    """The known edits that together turn ``wrong`` into ``right`` when several separate them
    (two to ``most``) and each change, made alone, is one ``known_edit`` (a pair of line
    variants that exploration found, or a model's correction of a few known kinds); in the order
    of the program. Each edit's program is ``wrong`` with that edit alone. A change is a hunk of
    the line diff, adjacent lines changed one for one being a change each. None for anything
    else: one change or none, a change that is not a known edit, too many of them."""
    pieces = []
    for first, last, new in hunks(wrong, right):  # adjacent lines changed one for one: each line its own
        one_for_one = last - first == len(new) > 1
        pieces += [(first + i, first + i + 1, [new[i]]) for i in range(len(new))] if one_for_one else [
            (first, last, new)]
    edits = []
    for hunk in pieces:
        alone = apply_hunk(wrong, hunk)
        if _same_lines(alone) == _same_lines(wrong):
            continue  # blank lines or comments only
        edit = known_edit(wrong, alone, problem)
        if edit is None:
            return None
        edits.append(edit)
    return edits if 2 <= len(edits) <= most else None


def _is_code(line: str) -> bool:
    """Whether a line holds code: neither blank nor a whole-line comment."""
    return bool(line.strip()) and not line.strip().startswith("#")


def _code_lines(lines: list[str]) -> list[str]:
    """The lines that hold code, stripped."""
    return [line.strip() for line in lines if _is_code(line)]


def _is_constraint(line: str) -> bool:
    """Whether one line of code is a whole constraint statement (``m.c = Constraint(...)`` or ``….add(x <= y)``)."""
    try:
        tree = ast.parse(line)
    except SyntaxError:
        return False
    if len(tree.body) != 1:
        return False
    stmt = tree.body[0]
    if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Call):
        return _ctor(stmt.value) == "Constraint"
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and _ctor(stmt.value) == "add"
            and any(isinstance(a, ast.Compare) for a in stmt.value.args))


def _stripped(program: str) -> list[str]:
    return [line.rstrip() for line in program.splitlines()]


def _same_lines(program: str) -> list[str]:
    """The program's lines of code, trailing spaces, blank lines and whole-line comments aside."""
    return [line for line in _stripped(program) if _is_code(line)]


def _one_line(code: str) -> str:
    return " ".join(code.split())
