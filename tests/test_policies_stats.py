"""Wilson intervals and percentiles: textbook values, edge cases, bounds that hold for any input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.stats import percentile, wilson


def test_no_evidence_is_uninformative() -> None:
    assert wilson(0, 0, 0.95) == (0.0, 1.0)


def test_textbook_interval() -> None:
    # 8 of 10 at 95%: the Wilson interval is (0.490, 0.943) in every reference table.
    lo, hi = wilson(8, 10, 0.95)
    assert lo == pytest.approx(0.4902, abs=1e-4)
    assert hi == pytest.approx(0.9433, abs=1e-4)


def test_perfect_record_still_has_doubt() -> None:
    lo, hi = wilson(50, 50, 0.95)
    assert lo == pytest.approx(50 / (50 + 1.959964**2), abs=1e-6)
    assert hi == 1.0
    assert wilson(0, 50, 0.95)[0] == 0.0


def test_more_evidence_narrows_the_interval() -> None:
    small, large = wilson(9, 10, 0.95), wilson(900, 1000, 0.95)
    assert large[0] > small[0] and large[1] < small[1]


def test_higher_confidence_widens_the_interval() -> None:
    lo95, hi95 = wilson(90, 100, 0.95)
    lo99, hi99 = wilson(90, 100, 0.99)
    assert lo99 < lo95 and hi99 > hi95


@pytest.mark.parametrize("args", [(5, 4, 0.95), (-1, 4, 0.95), (1, 4, 1.0), (1, 4, 0.0)])
def test_bad_arguments_are_rejected(args: tuple[int, int, float]) -> None:
    with pytest.raises(ValueError):
        wilson(*args)


@given(st.integers(1, 10_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
       st.floats(0.5, 0.999))
def test_interval_contains_the_observed_rate(sn: tuple[int, int], confidence: float) -> None:
    successes, n = sn
    lo, hi = wilson(successes, n, confidence)
    assert 0.0 <= lo <= successes / n <= hi <= 1.0


def test_percentile_matches_numpy_linear() -> None:
    assert percentile(range(1, 101), 95) == pytest.approx(95.05)
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile([7.0], 95) == 7.0
    assert percentile([1, 2, 3], 0) == 1 and percentile([1, 2, 3], 100) == 3


def test_percentile_of_nothing_is_none() -> None:
    assert percentile([], 95) is None
    with pytest.raises(ValueError):
        percentile([1.0], 101)
