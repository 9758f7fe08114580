"""LatencyHistogram percentiles stay within the documented error of the exact
nearest-rank values, computed here by sorting (no numpy)."""

from __future__ import annotations

import math
import random

import pytest

from hotpath.loadgen import LatencyHistogram


def _exact(values: list[float], q: float) -> float:
    """The documented rank: round(q * n), halves up, at least 1."""
    ordered = sorted(values)
    rank = max(1, int(q * 100 * len(ordered) / 100 + 0.5))
    return ordered[rank - 1]


@pytest.mark.parametrize(("figures", "bound"), [(3, 1 / 1024), (2, 1 / 128)])
def test_percentiles_are_within_the_documented_relative_error(figures: int, bound: float) -> None:
    rng = random.Random(11)
    # from a few microseconds to tens of seconds
    values = [rng.lognormvariate(math.log(0.02), 2.0) for _ in range(20_011)]
    hist = LatencyHistogram(figures)
    for v in values:
        hist.record(v)
    for q in (0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0):
        exact = _exact(values, q)
        got = hist.percentile(q)
        assert got >= exact - 0.5e-6, (q, got, exact)
        assert got <= exact * (1 + bound) + 0.5e-6, (q, got, exact)


def test_count_mean_min_and_max_are_exact() -> None:
    hist = LatencyHistogram()
    values = [0.25, 0.001, 3.5, 0.0405]
    for v in values:
        hist.record(v)
    assert hist.count == 4
    assert hist.max == 3.5
    assert hist.min == 0.001
    assert hist.mean == pytest.approx(sum(values) / 4)
    assert hist.percentile(1.0) == 3.5  # capped at the exact maximum


def test_empty_and_out_of_range() -> None:
    hist = LatencyHistogram()
    assert hist.percentile(0.99) == 0.0
    assert hist.mean == 0.0
    hist.record(-1.0)  # a clock that stepped back counts as 0
    hist.record(7200.0)  # past the hour: kept as an hour in the buckets
    assert hist.count == 2
    assert hist.max == 7200.0
    assert hist.percentile(0.5) <= 1e-6
    with pytest.raises(ValueError, match="quantile"):
        hist.percentile(99)
    with pytest.raises(ValueError, match="significant_figures"):
        LatencyHistogram(7)
