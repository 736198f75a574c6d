"""The vote among samples: which sample's answer to give, and when more samples cannot change it.

A candidate is one sample's final outcome: ``{"status": SolveStatus, "objective": ...}`` (plus
what the agent keeps with it). Samples agree when the solver proved the same optimal objective
(within the answer tolerance, ``alphaopt.answers.ANSWER``, each of the other: two objectives
that would be scored alike against an answer are one answer), or proved the same "no optimum"
status (infeasible, unbounded).
"""

from __future__ import annotations

from typing import Any

from alphaopt.answers import ANSWER
from solvers import SolveStatus

#: The solver proved there is no optimum.
_PROVEN = (SolveStatus.INFEASIBLE, SolveStatus.UNBOUNDED, SolveStatus.INFEASIBLE_OR_UNBOUNDED)


def _groups(candidates: list[dict[str, Any]]) -> tuple[list[list[int]], list[list[int]]]:
    """Samples that agree: optimal ones by objective, and those the solver proved infeasible or
    unbounded by status; each group lists candidate indexes in order."""
    optimal: list[list[int]] = []
    proven: dict[SolveStatus, list[int]] = {}
    for n, c in enumerate(candidates):
        if c["status"] == SolveStatus.OPTIMAL and c["objective"] is not None:
            group = next((g for g in optimal if ANSWER.same(candidates[g[0]]["objective"], c["objective"])), None)
            if group is None:
                optimal.append([n])
            else:
                group.append(n)
        elif c["status"] in _PROVEN:
            proven.setdefault(SolveStatus(c["status"]), []).append(n)
    return optimal, list(proven.values())


def vote(candidates: list[dict[str, Any]]) -> int:
    """Index of the chosen candidate. A strict majority of samples proved infeasible (or
    unbounded) wins: a model that most samples cannot satisfy is reported as such. Otherwise one
    from the largest group of optimal samples that agree on the objective (ties go to the group
    found first, so the greedy sample wins a tie); with no optimal sample, the first feasible
    one, else the first sample."""
    optimal, proven = _groups(candidates)
    majority = [g for g in proven if 2 * len(g) > len(candidates)]
    if majority:
        return majority[0][0]
    if optimal:
        return max(optimal, key=len)[0]  # max keeps the first of equal-length groups
    return next((n for n, c in enumerate(candidates) if c["status"] == SolveStatus.FEASIBLE), 0)


def decided(candidates: list[dict[str, Any]], samples: int) -> bool:
    """True when more samples cannot change the vote: all are spent, or a strict majority of
    ``samples`` already agrees (on an optimal objective, or on infeasible/unbounded)."""
    if len(candidates) >= samples:
        return True
    optimal, proven = _groups(candidates)
    return any(2 * len(g) > samples for g in [*optimal, *proven])
