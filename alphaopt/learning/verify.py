"""The counterfactual check: does a candidate insight turn wrong solves right?

A problem is solved ``k`` times in each arm: without the candidates (the solves learning began
with), with them, and with a placebo lesson in their place (one that restates what the prompts
already ask: any change to the prompt can turn a slip into a right answer). The first solve of
each arm is greedy, as a user's solve is; the others are sampled, each with its own seed, so no
single lucky sample decides. A candidate is accepted only when, counted over the ``k`` solves,
``with >= without + margin``, ``with >= placebo + margin`` and ``with >= min_wins`` (2 by
default, at most ``k``: I0066, I0105 and I0106 passed and shipped with one right solve of two
against none, and with 4 solves per arm none of them was right more than once), and, where a
solve without them succeeded, the placebo wins none (a one-sample margin over a baseline that sometimes
succeeds is noise: four lessons that passed so read wrong on review); the placebo arm runs only
when the first condition holds. An arm stops as soon as the verdict is decided (the
remaining solves could not change it): the verdict is the same as with every solve run, and
``skipped`` counts the solves spared. The counts and each solve's outcome are the evidence kept
on the insight's version. ``k = 1`` still works (tests, cheap runs).

Candidates whose edit the code makes (a quoted condition, a relation edit: ``agent/applied.py``)
that fail this way are checked once more with their lesson kept out of the prompt: the code's
edit alone, against the same arms. A small model told a lesson often writes a different program
that the edit cannot mend. Passing so, the evidence says ``told: False`` (the told check's counts
under ``told_check``), and the insight is applied and never told (``insight_dict``). A candidate
checked beside them whose edit the code does not make is told in that check too, and its
evidence does not say ``told: False`` (``Verdict.evidence_for``).

What counts as a success depends on the contrast the candidates came from
(``alphaopt.learning.contrasts``): the right answer, the right answer with a first program that
ran (a code lesson), a first program that ran (a code lesson from a problem no solve got right),
or a right first program (a lesson learned from a repair or diagnosis). A first program that
runs is a weak sign (two lessons that passed by it by one sample read wrong on review), so under
that criterion the program must run in no solve without the candidates, nor with the placebo. A
check's solves stop where nothing after could change the verdict: no repair when the first
program must run, and no diagnosis or patch either when only the first program counts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from alphaopt.agent import applied, prompts
from alphaopt.agent.nodes import REPAIRABLE
from alphaopt.agent.retrieval import insight_dict
from alphaopt.agent.state import Solution
from alphaopt.learning.contrasts import Criterion
from library import Insight, Task

#: ``solve(task, run_id, kind, sample, forced, without=...)``: one recorded solve of a task with
#: forced insights (``Learner.solve``).
Solve = Callable[..., Solution]


def success(solution: Solution, answer: float, criterion: Criterion,
            correct: Callable[[float | None, float], bool]) -> bool:
    """Whether a solve counts as a success under ``criterion``."""
    if criterion == "right_first":
        first = solution.attempts[0] if solution.attempts else None
        return first is not None and first.status in ("optimal", "feasible") and correct(first.objective, answer)
    if criterion == "runs":  # a code lesson where the answer was out of reach: its first program must run
        return bool(solution.attempts) and solution.attempts[0].status not in REPAIRABLE
    right = correct(solution.objective, answer)
    if criterion == "runs_first":  # a code insight must make the first program run, not only the final one
        return right and bool(solution.attempts) and solution.attempts[0].status not in REPAIRABLE
    return right


#: The criteria of code lessons (their evidence says ``code_only``).
CODE_CRITERIA = ("runs_first", "runs")


def recheck_criterion(insight: Insight) -> Criterion:
    """What a recheck of a verified insight counts as a success: what its first check counted
    for a code lesson verified by a first program that ran (``runs``), else the right answer
    (with a first program that ran, for a code lesson)."""
    if insight.stage.value != "code_implementation":
        return "final"
    evidence = insight.provenance.evidence
    first = evidence.get("criterion", (evidence.get("recheck") or {}).get("criterion"))
    return "runs" if first == "runs" else "runs_first"


@dataclass
class Verdict:
    """The check's outcome and the evidence kept on the candidates' versions."""

    accepted: bool
    evidence: dict[str, Any] = field(default_factory=dict)
    with_runs: list[Solution] = field(default_factory=list)
    untold: frozenset[str] = frozenset()  # the candidates checked with their lesson untold (the code's edit)

    def evidence_for(self, insight_id: str) -> dict[str, Any]:
        """The evidence kept on one candidate's version: ``told: False`` only on those whose edit
        the code made, the lesson untold (a candidate checked beside them was told)."""
        if self.evidence.get("told") is not False or insight_id in self.untold:
            return self.evidence
        return {k: v for k, v in self.evidence.items() if k != "told"}

    @property
    def skipped(self) -> int:
        """Solves the check did not need: the verdict was decided without them."""
        return int(self.evidence.get("skipped", 0))

    @property
    def why(self) -> str:
        return "a placebo did as well" if "placebo" in self.evidence and not self.accepted else ""


class Checker:
    """Runs the counterfactual check for one learning run."""

    def __init__(self, solve: Solve, k: int, margin: int, placebo: bool,
                 correct: Callable[[float | None, float], bool], *, min_wins: int = 2) -> None:
        self.solve, self.k, self.margin, self.placebo, self.correct = solve, k, margin, placebo, correct
        self.min_wins = max(1, min_wins)  # right solves with the lesson, at least (at most all of them)

    def success(self, solution: Solution, answer: float, criterion: Criterion) -> bool:
        """Whether a solve counts as a success under ``criterion``."""
        return success(solution, answer, criterion, self.correct)

    def check(self, task: Task, run_id: str, candidates: Sequence[Insight], without: Sequence[Solution],
              criterion: Criterion, placebos: dict[tuple[str, ...], list[Solution]] | None = None) -> Verdict:
        """Solve with the candidates ``k`` times and compare with ``without`` (and the placebo).

        Args:
            task: The training problem (with its answer).
            run_id: The learning run the solves are recorded under.
            candidates: The candidate insights, checked together.
            without: The problem's solves without them (``k`` of them).
            criterion: What counts as a success.
            placebos: The placebo arm's solves of this problem by stages, shared between the
                checks of one problem (the placebo does not depend on the candidates).
        """
        answer = float(task.answer)

        def wins(solutions: Sequence[Solution]) -> list[int]:
            return [int(success(s, answer, criterion, self.correct)) for s in solutions]

        forced = [insight_dict(c) for c in candidates]
        base = wins(without[: self.k])
        strict = criterion == "runs"  # a weak sign: the program may run in no solve without the lesson
        need = self.k + 1 if strict and sum(base) > 0 else max(sum(base) + self.margin, min(self.min_wins, self.k))
        # a problem sometimes solved without the lesson: the placebo may win none (every lesson
        # that passed by one sample over such a baseline and a winning placebo read wrong on review)
        strict = strict or sum(base) > 0
        solved = self._with_arm(task, run_id, "verify_with", forced, need, criterion, wins)
        evidence: dict[str, Any] = {"without": sum(base), "with": sum(wins(solved)), "k": self.k,
                                    "criterion": criterion, "code_only": criterion in CODE_CRITERIA,
                                    "solves": {"without": base, "with": wins(solved)}}
        accepted = sum(wins(solved)) >= need
        saved = self.k - len(solved)
        if accepted:
            accepted, spared = self._placebo(task, run_id, candidates, criterion, wins, sum(wins(solved)),
                                             strict, placebos, evidence)
            saved += spared
        edited = {e.insight_id for e in applied.edits(forced, task.text)}
        if not accepted and edited:
            # the code makes these candidates' edit: check them once more with their lesson kept
            # out of the prompt (a small model often writes a different program when told); a
            # candidate whose edit the code does not make (checked beside them) is still told
            untold = self._with_arm(task, run_id, "verify_untold",
                                    [{**f, "told": f["id"] not in edited} for f in forced], need, criterion, wins)
            saved += self.k - len(untold)
            told_check: dict[str, Any] = {k: evidence.pop(k) for k in ("with", "placebo") if k in evidence}
            told_check["solves"] = {k: evidence["solves"].pop(k) for k in ("with", "placebo")
                                    if k in evidence["solves"]}
            evidence.update({"with": sum(wins(untold)), "told": False, "told_check": told_check})
            evidence["solves"]["with"] = wins(untold)
            accepted = sum(wins(untold)) >= need
            if accepted:
                accepted, spared = self._placebo(task, run_id, candidates, criterion, wins, sum(wins(untold)),
                                                 strict, placebos, evidence)
                saved += spared
            solved = untold
        evidence["skipped"] = saved
        return Verdict(accepted, evidence, solved, frozenset(edited) if evidence.get("told") is False else frozenset())

    def _with_arm(self, task: Task, run_id: str, kind: str, forced: list[dict[str, Any]], need: int,
                  criterion: Criterion, wins: Callable[[Sequence[Solution]], list[int]]) -> list[Solution]:
        """Up to ``k`` solves with the forced lessons, stopped once ``need`` is out of reach."""
        solved: list[Solution] = []
        for sample in range(self.k):
            if sum(wins(solved)) + self.k - sample < need:
                break  # the rest cannot reach the margin: rejected whatever they give
            solved.append(self.solve(task, run_id, kind, sample, forced, judged=criterion))
        return solved

    def _placebo(self, task: Task, run_id: str, candidates: Sequence[Insight], criterion: Criterion,
                 wins: Callable[[Sequence[Solution]], list[int]], won: int, strict: bool,
                 placebos: dict[tuple[str, ...], list[Solution]] | None,
                 evidence: dict[str, Any]) -> tuple[bool, int]:
        """The placebo arm, when the check has one: whether the candidates' ``won`` successes
        beat it by the margin, and the solves it spared. Its counts go into ``evidence``."""
        if not self.placebo:
            return True, 0
        limit = 0 if strict else won - self.margin  # the most the placebo may win for them to pass
        stages = tuple(dict.fromkeys(c.stage.value for c in candidates))
        runs = (placebos if placebos is not None else {}).setdefault((*stages, criterion), [])
        placebo = [{**prompts.PLACEBO, "stage": stage} for stage in stages]
        control: list[int] = []
        for sample in range(self.k):
            if sum(control) > limit or sum(control) + self.k - sample <= limit:
                break  # decided: the placebo did as well already, or cannot any more
            if sample == len(runs):
                runs.append(self.solve(task, run_id, "verify_placebo", sample, placebo, judged=criterion))
            control += wins(runs[sample:sample + 1])
        evidence["placebo"] = sum(control)
        evidence["solves"]["placebo"] = control
        return sum(control) <= limit, self.k - len(control)

    def recheck(self, insight: Insight, tasks: Sequence[Task], run_id: str) -> dict[str, Any]:
        """The check again on a verified insight's source problems: ``k`` solves each without it
        (the rest of the library stays), with it, and with the placebo in its place. Kept when,
        summed over the problems, it beats both by the margin with at least ``min_wins`` successes
        (capped at all its solves, not at ``k``: with one solve per source, one right solve over
        several sources is still one lucky sample)."""
        criterion = recheck_criterion(insight)
        arms = {"without": [], "with": [insight_dict(insight)],
                "placebo": [{**prompts.PLACEBO, "stage": insight.stage.value}]}
        counts = dict.fromkeys(arms, 0)
        for task in tasks:
            for sample in range(self.k):
                for arm, forced in arms.items():
                    solution = self.solve(task, run_id, f"recheck_{arm}", sample, forced, without=[insight.id],
                                          judged=criterion)
                    counts[arm] += success(solution, float(task.answer), criterion, self.correct)
        baseline = (counts["without"] == counts["placebo"] == 0 if criterion == "runs"
                    else counts["without"] == 0 or counts["placebo"] == 0)  # as in ``check``
        kept = counts["with"] >= max(counts["without"], counts["placebo"]) + self.margin \
            and counts["with"] >= min(self.min_wins, self.k * len(tasks)) and baseline
        return {**counts, "k": self.k, "sources": len(tasks), "code_only": criterion in CODE_CRITERIA,
                "criterion": criterion,
                "recheck": True, "kept": kept}
