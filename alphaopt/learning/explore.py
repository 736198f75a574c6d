"""Answer-guided exploration: from a failed program to one whose solved objective hits the target.

Cheapest first, the solver the judge throughout, and a program that writes the target value
never counts:

1. every variable's integrality flipped at once (a solver run, no model call);
2. single-line variants (``alphaopt.learning.variants``): one constraint's direction, the
   objective's sense, one variable's integrality, one wrong number, one constraint dropped;
   then pairs of them when no single one reaches the target (solver runs only); steps 1 and 2
   on each failed solve's program (with several solves, each distinct one). A variant that
   turns the program against what the text says unambiguously (the sense it asks for, the
   direction it states for a bound, or that bound dropped: ``variants.against_text``) is not
   screened: with up to 200 pairs, such edits reached the answer by coincidence, or by a label
   that reads the text otherwise, on four of the five problems a run reached by line edits (a
   maximum flow minimized, "minimize the number of concerts" maximized on two copies of one
   problem, "at least N units" turned to ``<=``, and then dropped);
3. model tries, sampled, each with its own seed: the model sees the program, how its
   objective compares with the target, and the target, and writes a corrected program; each
   try edits the latest program that ran. A correction that reaches the target is cut down to
   the smallest part of it that still does (each changed hunk alone, by the solver), so the
   contrast holds the precise edit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from alphaopt.agent import prompts
from alphaopt.agent.program import hardcodes, integrality_variants
from alphaopt.agent.reading import read
from alphaopt.agent.state import Solution
from alphaopt.learning.contrasts import Contrast, edit_step, outcome_of
from alphaopt.learning.ledger import Ledger
from alphaopt.learning.variants import Variant, against_text, apply_hunk, combine, hunks, line_variants
from alphaopt.llm.client import CallContext
from library import LibraryStore, Task
from solvers import SolverRunner

_RAN = ("optimal", "feasible", "infeasible", "unbounded", "infeasible_or_unbounded")  # a program the solver answered


@dataclass
class ExploreConfig:
    """How hard exploration tries (``LearnConfig`` holds these for a run)."""

    tries: int = 4
    temperature: float = 0.7
    flip_integrality: bool = True
    line_variants: bool = True
    max_variants: int = 60
    max_pairs: int = 200
    max_hunks: int = 8
    max_tokens: int = 1000


def outcome_line(status: str, objective: float | None, answer: float) -> str:
    """How a program's result compares with the target, as the exploration prompt says it."""
    if objective is None or status not in ("optimal", "feasible"):
        return f"no optimal solution (status: {status.replace('_', ' ')})"
    side = "lower" if objective < answer else "higher"
    return f"the optimal objective {objective:g}, {side} than the correct value"


class Explorer:
    """Finds a contrast for a failed problem (solver runs and model calls, recorded as attempts)."""

    def __init__(self, config: ExploreConfig, ledger: Ledger, runner: SolverRunner, store: LibraryStore,
                 correct: Callable[[float | None, float], bool], prepare: Callable[[str, str], str]) -> None:
        """``prepare(reply, problem)`` is a model reply's program as the solve path runs it."""
        self.config, self.ledger, self.runner, self.store = config, ledger, runner, store
        self.correct, self.prepare = correct, prepare

    def explore(self, task: Task, failed: Sequence[Solution], run_id: str) -> Contrast | None:
        """A contrast from a failed solve's program to one that reaches the answer, or None: the
        mechanical edits of each failed solve's program (each distinct one that ran), then the
        model's tries from the first solve's."""
        programs: dict[str, Solution] = {}
        for solution in failed:
            program = solution.program or solution.model_text
            if program.strip():
                programs.setdefault(program, solution)
        for program, solution in programs.items():
            if solution.status in _RAN:
                found = self._mechanical(task, solution, program, run_id)
                if found is not None:
                    return found
        if not programs:
            return None
        program, solution = next(iter(programs.items()))
        return self._model(task, solution, program, run_id)

    def _reaches(self, task: Task, program: str, run_id: str, kind: str) -> tuple[bool, Any]:
        """Run a program unless it writes the target; record the attempt. ``(reached, result)``."""
        answer = float(task.answer)
        if hardcodes(program, answer, task.text):
            self.store.record_attempt(task.id, kind=kind, status="rejected: writes the target value", run_id=run_id,
                                      program=program)
            return False, None
        result = self.runner.run(program)
        reached = result.ok and self.correct(result.objective, answer)
        if reached or kind == "explore":  # every model try is kept; of the many variants, those that reach
            self.store.record_attempt(task.id, kind=kind, status=result.status.value, run_id=run_id, program=program,
                                      objective=result.objective, error=result.error)
        return reached, result

    def _mechanical(self, task: Task, failed: Solution, program: str, run_id: str) -> Contrast | None:
        outcome = outcome_of(failed)
        if self.config.flip_integrality and failed.status in ("optimal", "feasible"):
            for change, flipped in integrality_variants(program):
                result = self.runner.run(flipped)
                self.store.record_attempt(task.id, kind="explore_integrality", status=result.status.value,
                                          run_id=run_id, program=flipped, objective=result.objective,
                                          error=result.error)
                if result.ok and self.correct(result.objective, float(task.answer)):
                    return Contrast("integrality", "integrality_condition", program, flipped, outcome, change=change,
                                    kind="integrality")
        if not self.config.line_variants:
            return None
        reading = read(task.text)
        singles = [v for v in line_variants(program, task.text, limit=self.config.max_variants)
                   if not against_text(v, reading)]
        for variant in singles:
            if self._reaches(task, variant.program, run_id, "explore_line")[0]:
                return self._line_contrast(program, variant, outcome)
        pairs = 0
        for i, first in enumerate(singles):
            for second in singles[i + 1:]:
                both = combine(program, first, second)
                if both is None:
                    continue
                if pairs >= self.config.max_pairs:
                    return None
                pairs += 1
                if self._reaches(task, both, run_id, "explore_line")[0]:
                    return Contrast("line_edit", "extract", program, both, outcome,
                                    change=f"{first.change}; {second.change}",
                                    example=f"{first.example}; {second.example}")
        return None

    @staticmethod
    def _line_contrast(program: str, variant: Variant, outcome: str) -> Contrast:
        return Contrast("line_edit", edit_step(variant.kind), program, variant.program, outcome,
                        change=variant.change, example=variant.example, kind=variant.kind)

    def _model(self, task: Task, failed: Solution, program: str, run_id: str) -> Contrast | None:
        """Model tries, each sampled with a seed of its own, each editing the latest program that
        ran; the first that reaches the target, cut down to its smallest reaching part."""
        answer = float(task.answer)
        start = program
        latest, outcome = program, outcome_line(failed.status, failed.objective, answer)
        for attempt in range(self.config.tries):
            # sampled from the first try: at temperature 0 the model gave the program back unchanged
            # in 15 of 22 training problems (benchmarks/explore_ab.py), which cannot reach the target
            llm = self.ledger.sampling(attempt + 1, self.config.temperature)
            messages, sha = prompts.render("explore", problem=task.text, target=f"{answer:g}", outcome=outcome,
                                           program=latest)
            reply = llm.complete(messages, prompt_name="explore", prompt_sha=sha, max_tokens=self.config.max_tokens,
                                 context=CallContext(run_id=run_id, task_id=task.id, node="explore"))
            candidate = self.prepare(reply.text, task.text)
            reached, result = self._reaches(task, candidate, run_id, "explore")
            if reached:
                return self._smallest(task, start, candidate, failed, run_id)
            if result is not None and (result.ok or result.status.value in (
                    "infeasible", "unbounded", "infeasible_or_unbounded")):
                latest, outcome = candidate, outcome_line(result.status.value, result.objective, answer)
        return None

    def _smallest(self, task: Task, wrong: str, right: str, failed: Solution, run_id: str) -> Contrast:
        """The contrast from ``wrong`` to the smallest part of the model's correction that
        still reaches the target: one changed hunk alone, when one does; else all of it."""
        alone = self._reaching_hunk(task, wrong, right, run_id)
        return Contrast("explore", "extract", wrong, alone or right, outcome_of(failed))

    def narrow(self, task: Task, contrast: Contrast, run_id: str) -> Contrast:
        """A modeling contrast of the solves (a fix, or a right sample beside a wrong one) cut
        down, as a model's correction is, to the one changed hunk that alone turns the wrong
        program right, when one does (solver runs only); else as it was."""
        if contrast.step != "extract" or contrast.example:
            return contrast
        alone = self._reaching_hunk(task, contrast.wrong, contrast.right, run_id)
        return replace(contrast, right=alone) if alone else contrast

    def _reaching_hunk(self, task: Task, wrong: str, right: str, run_id: str) -> str | None:
        """``wrong`` with one changed hunk of ``right`` applied, the first that alone reaches the
        target (of the first ``max_hunks``); None when there is only one hunk or none reaches."""
        changes = hunks(wrong, right)
        if len(changes) > 1:
            for hunk in changes[: self.config.max_hunks]:
                alone = apply_hunk(wrong, hunk)
                if self._reaches(task, alone, run_id, "explore_hunk")[0]:
                    return alone
        return None
