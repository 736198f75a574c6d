"""What a problem's text says, read once without a model, into a ``Reading``: the goal
sentence, the direction of the objective, the numbers that the text states as lower or upper
bounds (and the percentages it states as bounds on a share), a goal that is a count of things to
minimize, and the text's quantities (to find those a program never writes).

``read`` runs at the start of a solve and the result stays in the graph's state; every node and
every rewrite uses that object. Each reading answers only when the text is unambiguous, and None
or nothing otherwise: the rewrites that use them (``alphaopt.agent.rewrites``) must never turn a
right model wrong. The counted goal and the unused quantities are signs, not fixes: they make the
agent ask the model for a line, whose result stands only when it is no worse.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Sense = Literal["maximize", "minimize"]
Relation = Literal[">=", "<="]


class TextNumber(BaseModel):
    """A quantity of the text, where it first occurs: ``written`` as in the text ("1,500"), its
    ``value``, whether a percent sign or word follows it, and the ``phrase`` around it."""

    model_config = ConfigDict(frozen=True)

    written: str
    value: float
    percent: bool = False
    phrase: str = ""

    def written_in(self, constants: Collection[float]) -> bool:
        """Whether a program with these numeric constants writes it (a percentage as it is
        written or as its hundredth)."""
        forms = [self.value, self.value / 100] if self.percent else [self.value]
        return any(math.isclose(f, c, rel_tol=1e-9, abs_tol=1e-12) for f in forms for c in constants
                   if math.isfinite(c))


class Reading(BaseModel):
    """What the text says, read once (``read``): see the module docstring for each part."""

    model_config = ConfigDict(frozen=True)

    goal: str = ""  # the sentence that states what to optimize ("" when none is recognisable)
    sense: Sense | None = None  # the direction the text asks for, when it is unambiguous
    counted_goal: str | None = None  # "minimize the total number of workers": a count to minimize
    bounds: dict[float, Relation] = Field(default_factory=dict)  # numbers stated once as a bound
    shares: dict[float, Relation] = Field(default_factory=dict)  # "at most 40%": {0.4: "<="}, stated once
    numbers: tuple[TextNumber, ...] = ()  # the text's quantities, each value once
    words: int = 0

    def unused(self, constants: Collection[float], *, limit: int = 12) -> list[TextNumber]:
        """The text's quantities that a program with these numeric constants never writes
        (``program.numeric_constants``), the first ``limit`` of them. A number left out is most
        often a constraint or an objective term the program forgot."""
        return [n for n in self.numbers if not n.written_in(constants)][:limit]


def read(problem: str) -> Reading:
    """Read the problem text once: everything a ``Reading`` holds."""
    goal = _goal_sentence(problem)
    found = _COUNT_GOAL.search(goal)
    return Reading(goal=goal, sense=_goal_sense(problem), counted_goal=found.group(0) if found else None,
                   bounds=_bounds(problem), shares=_shares(problem), numbers=tuple(_quantities(problem)),
                   words=len(problem.split()))


_SENTENCE_END = re.compile(r"(?<=[.?!])\s+|\n")
_OPTIMIZE = re.compile(r"\b(maximi[sz]|minimi[sz])", re.IGNORECASE)
_EXTREME = re.compile(r"\b(maximum|minimum|max|min|most|least|fewest|lowest|highest|cheapest|smallest|largest"
                      r"|greatest|best|optimal)\b", re.IGNORECASE)
_GOAL_CHARS = 400


def _goal_sentence(problem: str) -> str:
    """The sentence of the problem that states what to optimize: the last one that says
    maximize/minimize, else the last question, else the last one with a word like "lowest" or
    "maximum"; "" when there is none (or it is too long to be one sentence)."""
    sentences = [s.strip() for s in _SENTENCE_END.split(problem.strip()) if s.strip()]
    for wanted in (_OPTIMIZE.search, lambda s: s.endswith("?"), _EXTREME.search):
        hits = [s for s in sentences if wanted(s)]
        if hits:
            goal = " ".join(hits[-1].split())
            return goal if len(goal) <= _GOAL_CHARS else ""
    return ""


#: "minimize the total number of workers": a count of the things the variables stand for, whose
#: objective adds the variables up unweighted (a small model often weights them by a capacity or a
#: cost instead). A "maximize the number of meals delivered" counts an output, which weights rightly
#: compute, so only a count to minimize is read.
_COUNT_GOAL = re.compile(r"\bminimi[sz]e (?:the )?(?:total |overall )?number of [\w -]{1,40}?"
                         r"(?= needed| required| used|[.?,;]|$)", re.IGNORECASE)


_MAXIMIZE = re.compile(r"\bmaximi[sz]", re.IGNORECASE)
_MINIMIZE = re.compile(r"\bminimi[sz]", re.IGNORECASE)
_MOST = re.compile(r"\b(maximum|most|highest|largest|greatest|biggest)\b", re.IGNORECASE)
_LEAST = re.compile(r"\b(minimum|least|fewest|lowest|cheapest|smallest)\b", re.IGNORECASE)
_BOUND_WORDS = re.compile(r"\bat (most|least)\b", re.IGNORECASE)


def _goal_sense(problem: str) -> Sense | None:
    """``"maximize"`` or ``"minimize"`` when the text says which unambiguously, else None.

    The verbs (maximize/minimize) anywhere in the text decide; without them, words like
    "minimum" or "highest" in the last question do. Both directions present means no answer;
    "at most" and "at least" are bounds, not goals, and are ignored."""
    text = _BOUND_WORDS.sub(" ", problem)
    questions = [s for s in _SENTENCE_END.split(text.strip()) if s.strip().endswith("?")]
    for where, up, down in ((text, _MAXIMIZE, _MINIMIZE), (questions[-1] if questions else "", _MOST, _LEAST)):
        wants_max, wants_min = bool(up.search(where)), bool(down.search(where))
        if wants_max or wants_min:
            return None if wants_max and wants_min else "maximize" if wants_max else "minimize"
    return None


_NUMBER = r"\$?\s*(\d[\d,]*(?:\.\d+)?)"
_NOT_PERCENT = r"(?!\s*(?:%|percent|per cent)|[\d.,]*\d)"
_AT_LEAST = (r"at least|no less than|not less than|(?:a )?minimum of|at minimum|requires?|requiring|needs?(?: to \w+)?"
             r"|demand of|must (?:transport|produce|make|deliver|send|supply|move|ship)")
#: "a table needs 3 hours", "each box requires 2 kg": a need per unit is a coefficient, not a bound.
_PER_UNIT = re.compile(r"\b(each|every|per|a|an|one)\b[^.;,]{0,30}$", re.IGNORECASE)
_NEED = re.compile(r"^(requires?|requiring|needs?)\b", re.IGNORECASE)
_AT_MOST = (r"at most|no more than|not more than|(?:a )?maximum of|up to|not exceed|cannot exceed|not to exceed"
            r"|available|budget of|capacity of|only (?:has|have)")
_ANY_NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")


def _bounds(problem: str) -> dict[float, Relation]:
    """The numbers the text states once, as a bound: ``{2000.0: ">="}`` for "at least 2000 units
    must be sent", ``{500.0: "<="}`` for "a budget of $500".

    A number is kept only when it occurs once in the text and its words say one direction
    (percentages are left out: they bound a share, not a total). A list that follows the number
    shares its bound: "at least 20 kg of sand, 30 kg of gravel, and 45 kg of cement" states
    three. A small model often writes ``<= 2000`` for "at least 2000";
    ``rewrites`` turns such a relation around."""
    said: dict[float, set[Relation]] = {}
    directions: tuple[tuple[Relation, str], ...] = ((">=", _AT_LEAST), ("<=", _AT_MOST))
    for relation, words in directions:
        for found in re.finditer(rf"\b(?:{words})\s+{_NUMBER}{_NOT_PERCENT}", problem, re.IGNORECASE):
            need = _NEED.match(found.group(0))
            if need and _PER_UNIT.search(problem[max(0, found.start() - 40):found.start()]):
                continue
            # a list after "requires" is most often a need per unit ("requires 17 hours of labor, 8 hours of ...")
            listed = [] if need else _listed_after(problem, found.end())
            for value in (_value(found.group(1)), *listed):
                if value is not None:
                    said.setdefault(value, set()).add(relation)
    counts: dict[float | None, int] = {}
    for found in _ANY_NUMBER.finditer(problem):
        value = _value(found.group(0))
        counts[value] = counts.get(value, 0) + 1
    return {value: relations.pop() for value, relations in said.items()
            if len(relations) == 1 and counts.get(value) == 1}


_SHARE = r"(\d+(?:\.\d+)?)\s*(?:%|percent\b|per cent\b)"
_SHARE_WORDS: tuple[tuple[Relation, str], ...] = (
    (">=", r"at least|no less than|not less than|(?:a )?minimum of"),
    ("<=", r"at most|no more than|not more than|(?:a )?maximum of|up to|not exceed|cannot exceed"))


def _shares(problem: str) -> dict[float, Relation]:
    """The percentages the text states once as a bound on a share, as fractions: ``{0.4: "<="}``
    for "at most 40% of the concerts", each with the one direction its words say (a percentage
    said with both, or written twice, is left out)."""
    said: dict[float, set[Relation]] = {}
    for relation, words in _SHARE_WORDS:
        for found in re.finditer(rf"\b(?:{words})\s+(?:\w+\s+){{0,2}}?{_SHARE}", problem, re.IGNORECASE):
            said.setdefault(float(found.group(1)) / 100, set()).add(relation)
    written = [float(n) / 100 for n in re.findall(_SHARE, problem, re.IGNORECASE)]
    return {share: relations.pop() for share, relations in said.items()
            if len(relations) == 1 and written.count(share) == 1}


#: The next item of a list after a bound: "at least 20 kg of sand, 30 kg of gravel, and 45 kg of
#: cement" bounds all three. A few words of unit, then a comma or "and", then the number.
_NEXT_IN_LIST = re.compile(rf"[^.;:?!,\d%$]{{0,40}}?(?:,\s*(?:and\s+)?|\s+and\s+){_NUMBER}{_NOT_PERCENT}")


def _listed_after(problem: str, end: int) -> list[float | None]:
    """The numbers listed after a bound's number, in the same sentence, as in "at least 20 kg of
    sand, 30 kg of gravel, and 45 kg of cement"."""
    listed = []
    while found := _NEXT_IN_LIST.match(problem, end):
        listed.append(_value(found.group(1)))
        end = found.end()
    return listed


#: A number that names a thing ("Sector 8", "Factory 2", "#3"), not a quantity.
_NAME_BEFORE = re.compile(r"(?:\b[A-Z][a-z]*\s*|#\s*)$")
#: The second number of a range or a label: "Table 1-17", "pages 3 - 9".
_RANGE_BEFORE = re.compile(r"\d\s*-\s*$")
_DASH_AFTER = re.compile(r"\s*-")  # the first number of a range, or of a compound ("a 4-wheeler")
_PERCENT_AFTER = re.compile(r"\s*(?:%|percent\b|per cent\b)", re.IGNORECASE)


def _quantities(problem: str) -> list[TextNumber]:
    """The text's quantities, each value once (where it first counts), in order.

    Left out: numbers up to 3 (counts of kinds and the like, often written as loops), numbers
    right after a capitalized word or "#" (names: "Sector 8", "Table 1"), the second number of a
    range ("1-17") and the first ("4 - 9", "a 4-wheeler"), and the cells of a table drawn with
    ``|`` (a constraint line cannot bring back a table's data)."""
    quantities: list[TextNumber] = []
    seen: set[float] = set()
    for found in _ANY_NUMBER.finditer(problem):
        value = _value(found.group(0))
        before = problem[max(0, found.start() - 12):found.start()]
        if (value is None or value in seen or value <= 3 or _DASH_AFTER.match(problem, found.end())
                or _NAME_BEFORE.search(before) or _RANGE_BEFORE.search(before)
                or "|" in _line_at(problem, found.start())):
            continue
        seen.add(value)
        quantities.append(TextNumber(written=found.group(0), value=value,
                                     percent=bool(_PERCENT_AFTER.match(problem, found.end())),
                                     phrase=_phrase(problem, found.start())))
    return quantities


def _line_at(text: str, at: int) -> str:
    end = text.find("\n", at)
    return text[text.rfind("\n", 0, at) + 1:None if end < 0 else end]


def _phrase(text: str, start: int, words: int = 6) -> str:
    """The words around the number at ``start``, within its sentence: "holds 80 crates of apples"."""
    start -= text[start - 1:start] == "$"
    before = re.split(r"(?<=[.?!:;])\s+|\n", text[:start])[-1].split()[-words:]
    after = re.split(r"(?<=[.?!:;])\s|\n", text[start:], maxsplit=1)[0].split()[:words + 1]
    return " ".join(before + after)


def _value(number: str) -> float | None:
    try:
        return float(number.replace(",", "").rstrip("."))
    except ValueError:
        return None
