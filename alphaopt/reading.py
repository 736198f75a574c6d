"""What a problem's text says, read without a model: the goal sentence, the direction of the
objective, and the numbers that the text states as lower or upper bounds.

Each reading answers only when the text is unambiguous, and None or nothing otherwise: the
program fixes that use them (``program.normalize``) must never turn a right model wrong.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.?!])\s+|\n")
_OPTIMIZE = re.compile(r"\b(maximi[sz]|minimi[sz])", re.IGNORECASE)
_EXTREME = re.compile(r"\b(maximum|minimum|max|min|most|least|fewest|lowest|highest|cheapest|smallest|largest"
                      r"|greatest|best|optimal)\b", re.IGNORECASE)
_GOAL_CHARS = 400


def goal_sentence(problem: str) -> str:
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


_MAXIMIZE = re.compile(r"\bmaximi[sz]", re.IGNORECASE)
_MINIMIZE = re.compile(r"\bminimi[sz]", re.IGNORECASE)
_MOST = re.compile(r"\b(maximum|most|highest|largest|greatest|biggest)\b", re.IGNORECASE)
_LEAST = re.compile(r"\b(minimum|least|fewest|lowest|cheapest|smallest)\b", re.IGNORECASE)
_BOUND_WORDS = re.compile(r"\bat (most|least)\b", re.IGNORECASE)


def goal_sense(problem: str) -> str | None:
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


def bounds(problem: str) -> dict[float, str]:
    """The numbers the text states once, as a bound: ``{2000.0: ">="}`` for "at least 2000 units
    must be sent", ``{500.0: "<="}`` for "a budget of $500".

    A number is kept only when it occurs once in the text and its words say one direction
    (percentages are left out: they bound a share, not a total). A list that follows the number
    shares its bound: "at least 97 grams of protein, 163 grams of carbohydrates, and 2217
    calories" states three. A small model often writes ``<= 2000`` for "at least 2000";
    ``program.normalize`` turns such a relation around."""
    said: dict[float, set[str]] = {}
    for relation, words in ((">=", _AT_LEAST), ("<=", _AT_MOST)):
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


#: The next item of a list after a bound: "at least 97 grams of protein, 163 grams of carbohydrates,
#: and 2217 calories" bounds all three. A few words of unit, then a comma or "and", then the number.
_NEXT_IN_LIST = re.compile(rf"[^.;:?!,\d%$]{{0,40}}?(?:,\s*(?:and\s+)?|\s+and\s+){_NUMBER}{_NOT_PERCENT}")


def _listed_after(problem: str, end: int) -> list[float | None]:
    """The numbers listed after a bound's number, in the same sentence, as in "at least 97 grams
    of protein, 163 grams of carbohydrates, and 2217 calories"."""
    listed = []
    while found := _NEXT_IN_LIST.match(problem, end):
        listed.append(_value(found.group(1)))
        end = found.end()
    return listed


def _value(number: str) -> float | None:
    try:
        return float(number.replace(",", "").rstrip("."))
    except ValueError:
        return None
