"""Contrasts: a wrong program and a right one for the same training problem, and where they came from.

Learning drafts its insights from contrasts. A solve gives some for free: a repair that made a
failing program run (a code lesson), a repair, diagnosis or patch that turned a wrong program
right, and, with several samples, a sample that was right where another was wrong.
Exploration (``alphaopt.learning.explore``) finds the others. Each contrast says which prompt
drafts from it and what a solve must do to count as a success when its insights are checked:
``final`` (the answer is right), ``runs_first`` (right, and the first program ran: a code lesson
must spare the repair), ``runs`` (the first program ran: a code lesson from a problem that no
solve got right, where no lesson about code can make the answer right, must still avoid its
error) or ``right_first`` (the first program itself is right: a lesson learned from a fix must
make the fix unnecessary).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Literal

from alphaopt.agent.nodes import REPAIRABLE
from alphaopt.agent.program import LINE_CHANGES
from alphaopt.agent.state import Attempt, Solution
from alphaopt.learning.variants import known_edit, known_edits

Criterion = Literal["final", "runs_first", "runs", "right_first"]


@dataclass(frozen=True)
class Contrast:
    """A wrong and a right program for one problem.

    Attributes:
        source: Where it came from: ``repair``, ``diagnose``, ``patch`` (during a solve),
            ``samples`` (two solves), ``integrality``, ``line_edit`` or ``explore``.
        step: The prompt that drafts from it: ``extract``, ``extract_code``,
            ``integrality_condition`` or ``edit_condition``; ``EDIT_PARTS`` when it is several
            known edits (``parts``), each drafted by its own.
        wrong: The wrong (or failing) program.
        right: The right (or repaired) program.
        outcome: What the wrong program gave, as the drafting prompt says it.
        criterion: What a solve must do to count as a success in the check.
        change: The edit in words, when it is known (an integrality flip, a single-line edit).
        example: The edit as ``wrong: ... right: ...``, when it is known exactly.
        kind: The kind of a known edit (``alphaopt.learning.variants.Variant.kind``), else "".
        parts: When the programs differ by a few known edits that reach the answer only
            together: one contrast for each edit alone (its ``right`` is ``wrong`` with that
            edit made), whose drafts are checked together.
    """

    source: str
    step: str
    wrong: str
    right: str
    outcome: str
    criterion: Criterion = "final"
    change: str = ""
    example: str = ""
    kind: str = ""
    parts: tuple[Contrast, ...] = ()

    @property
    def steps(self) -> tuple[str, ...]:
        """The prompts that draft from it (its parts', for several known edits)."""
        return tuple(dict.fromkeys(p.step for p in self.parts)) if self.parts else (self.step,)


#: The ``step`` of a contrast of several known edits (``Contrast.parts``).
EDIT_PARTS = "edit_parts"

Correct = Callable[[float | None], bool]


def with_known_edit(contrast: Contrast, problem: str) -> Contrast:
    """A modeling contrast whose two programs differ by one known edit (``known_edit``: one
    line's direction, sense, integrality or number, the objective made a plain count, or one
    constraint added or dropped), with that edit's kind, words and example, drafted by the prompt
    for it (``edit_step``). One whose programs differ by a few known edits as those edits'
    ``parts``: a model asked for one lesson of several edits wrote one that matched neither
    (I0124: it spoke of whole numbers, while its example flipped the objective's sense and a
    ratio's direction). Any other contrast as it was."""
    if contrast.step != "extract" or contrast.kind:
        return contrast
    edit = known_edit(contrast.wrong, contrast.right, problem)
    if edit is not None:
        return replace(contrast, step=edit_step(edit.kind), kind=edit.kind, change=edit.change, example=edit.example)
    edits = known_edits(contrast.wrong, contrast.right, problem)
    if not edits:
        return contrast
    parts = tuple(Contrast(contrast.source, edit_step(e.kind), contrast.wrong, e.program, contrast.outcome,
                           contrast.criterion, e.change, e.example, e.kind) for e in edits)
    return replace(contrast, step=EDIT_PARTS, change="; ".join(p.change for p in parts),
                   example="; ".join(p.example for p in parts), parts=parts)


def edit_step(kind: str) -> str:
    """The prompt that drafts from a known edit of ``kind``: the code states the lesson of every
    kind (``prompts.EDIT_LESSONS``, or the integrality flip's), and the model says at most when
    it applies (``integrality_condition``, ``edit_condition``)."""
    return "integrality_condition" if kind == "integrality" else "edit_condition"


def outcome_of(attempt: Attempt | Solution) -> str:
    """A program's result, as the extraction prompt shows it."""
    objective = f", objective {attempt.objective:g}" if attempt.objective is not None else ""
    return f"status {attempt.status}{objective}"


def solve_contrasts(solutions: Sequence[Solution], correct: Correct) -> list[Contrast]:
    """The contrasts the solves of one problem hold, first found first: in each solve, a run
    error that the next program fixed (whatever that program's answer), and a wrong program
    that a repair, diagnosis or patch turned right; across solves, a wrong final program and a
    right one of another solve."""
    found: list[Contrast] = []
    for solution in solutions:
        found += _within(solution.attempts, correct)
    right = next((s for s in solutions if correct(s.objective) and s.program), None)
    if right is not None:
        for wrong in solutions:
            if wrong.program and not correct(wrong.objective) and wrong.status not in REPAIRABLE:
                found.append(Contrast("samples", "extract", wrong.program, right.program, outcome_of(wrong)))
    unique: dict[tuple[str, str], Contrast] = {}
    for contrast in found:
        if contrast.wrong.strip() != contrast.right.strip():
            unique.setdefault((contrast.wrong, contrast.right), contrast)
    return list(unique.values())


def _within(attempts: Sequence[Attempt], correct: Correct) -> list[Contrast]:
    found = []
    for before, after in pairwise(attempts):
        if after.sample != before.sample:
            continue
        if before.status in REPAIRABLE and after.status not in REPAIRABLE:
            found.append(Contrast("repair", "extract_code", before.program, after.program,
                                  (before.error or before.status)[-1200:], "runs_first"))
        elif before.status not in REPAIRABLE and not correct(before.objective) and correct(after.objective):
            source = "patch" if any(f.startswith(LINE_CHANGES) for f in after.fixes) else after.stage
            found.append(Contrast(source, "extract", before.program, after.program, outcome_of(before),
                                  "right_first"))
    return found
