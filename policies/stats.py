"""Small statistics for the rollout gates: Wilson score intervals and percentiles.

Gates compare a confidence bound of agreement, never a raw average, so that 9 of 10
agreeing answers do not count as much as 900 of 1000.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache
from statistics import NormalDist


@lru_cache(maxsize=64)
def _z(confidence: float) -> float:
    """Two-sided normal quantile: 0.95 → 1.96."""
    return NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)


def wilson(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval for `successes` out of `n` at the two-sided `confidence`.

    No evidence (n = 0) gives the uninformative (0.0, 1.0).
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 ≤ successes ≤ n, got successes={successes}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")
    if n == 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    margin = z * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n)) / (1.0 + z2n)
    # The interval always holds the observed rate; clamping keeps rounding from breaking that.
    return max(0.0, min(p, centre - margin)), min(1.0, max(p, centre + margin))


def passable_n(min_agreement: float, confidence: float) -> int:
    """The fewest comparisons on which a student that agrees every time clears the gate: the
    n where the all-agree Wilson lower bound reaches `min_agreement` (35 at 0.9 / 95%). Less
    evidence than this cannot pass whatever the student does, so a task is trained only once
    its judged evidence reaches it."""
    if not 0.0 < min_agreement < 1.0:
        return 1
    z2 = _z(confidence) ** 2
    n = max(1, math.floor(z2 * min_agreement / (1.0 - min_agreement)))
    while wilson(n, n, confidence)[0] < min_agreement:
        n += 1
    return n


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation; None when there are no values.

    Same definition as numpy's default: p95 of 1..100 is 95.05.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    data = sorted(values)
    if not data:
        return None
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)
