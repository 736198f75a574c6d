"""When an objective counts as the answer: the one tolerance for comparing objectives.

Every place that compares an objective with an answer uses ``Tolerance`` (the default,
``ANSWER``): the benchmarks' scoring, the learner's verification, its check that a program does
not write the target, and the vote's test of whether two samples reached the same optimum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ATOL = 1e-6
RTOL = 1e-4


@dataclass(frozen=True)
class Tolerance:
    """``|got - answer| <= atol + rtol * |answer|``: relative to the answer, with an absolute floor
    for answers near zero.

    The relative part is as loose as a MIP solver's default optimality gap (HiGHS stops within
    1e-4 of the bound), so an optimum the solver proved to its own gap counts as that optimum.
    """

    atol: float = ATOL
    rtol: float = RTOL

    def correct(self, got: float | None, answer: float) -> bool:
        """Whether an objective matches the reference answer (None and NaN never do)."""
        if got is None or math.isnan(got):
            return False
        return abs(got - answer) <= self.atol + self.rtol * abs(answer)

    def same(self, a: float, b: float) -> bool:
        """Whether two objectives are the same optimum: each within the tolerance of the other."""
        return self.correct(a, b) and self.correct(b, a)

    def describe(self) -> str:
        """The rule in words, for reports."""
        return f"|got - answer| <= {self.atol:g} + {self.rtol:g}·|answer|"


#: The tolerance of every comparison with an answer.
ANSWER = Tolerance()
