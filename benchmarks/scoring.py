"""Correctness and summary statistics, stated in every report."""

from __future__ import annotations

import math

from alphaopt.answers import ATOL, RTOL, Tolerance

__all__ = ["ATOL", "RTOL", "Tolerance", "wilson"]  # the one answer tolerance, from alphaopt.answers


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a proportion (sensible for small n and extreme rates)."""
    if n == 0:
        return (0.0, 0.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))
