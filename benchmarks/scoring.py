"""Correctness and summary statistics, stated in every report."""

from __future__ import annotations

import math
from dataclasses import dataclass

ATOL = 1e-6
RTOL = 1e-4


@dataclass(frozen=True)
class Tolerance:
    """|got - answer| <= atol + rtol * |answer|."""

    atol: float = ATOL
    rtol: float = RTOL

    def correct(self, got: float | None, answer: float) -> bool:
        """Whether an objective matches the reference answer."""
        if got is None or math.isnan(got):
            return False
        return abs(got - answer) <= self.atol + self.rtol * abs(answer)

    def describe(self) -> str:
        return f"|got - answer| <= {self.atol:g} + {self.rtol:g}·|answer|"


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a proportion (sensible for small n and extreme rates)."""
    if n == 0:
        return (0.0, 0.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))
