"""HDR latency histograms (the ``hdrhistogram`` package, from the ``bench`` extra).

A :class:`LatencyHistogram` records durations in seconds as whole microseconds,
from 1 µs to one hour, in constant memory, and answers percentiles.

**Error.** With ``significant_figures=3`` (the default) every bucket is at most
1/1024 of its values wide, so a reported percentile is never below the exact one
(nearest rank, see :meth:`LatencyHistogram.percentile`) and at most 0.1% above it,
give or take the half microsecond of rounding to whole microseconds. With 2
significant figures (the per-second series) the bound is 1/128, under 0.8%.
Reported values are also capped at the exact maximum, which is kept on the side,
as are the exact minimum, count and sum (for the mean).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["LatencyHistogram", "require_hdrhistogram"]

_LOWEST_US = 1
_HIGHEST_US = 3_600_000_000  # one hour


def require_hdrhistogram() -> Any:
    """The ``HdrHistogram`` class; a missing package names the extra to install."""
    try:
        from hdrh.histogram import HdrHistogram
    except ImportError as exc:
        raise ModuleNotFoundError(
            "hotpath bench needs the hdrhistogram package: pip install 'hotpath[bench]'"
        ) from exc
    return HdrHistogram


class LatencyHistogram:
    """Durations in seconds; percentiles within the error stated in the module docs."""

    __slots__ = ("_hdr", "_max", "_min", "_n", "_sum", "significant_figures")

    def __init__(self, significant_figures: int = 3) -> None:
        if significant_figures not in (1, 2, 3, 4, 5):
            raise ValueError(f"significant_figures must be 1..5, got {significant_figures!r}")
        self.significant_figures = significant_figures
        self._hdr = require_hdrhistogram()(_LOWEST_US, _HIGHEST_US, significant_figures)
        self._n = 0
        self._sum = 0.0
        self._min = float("inf")
        self._max = 0.0

    def record(self, seconds: float) -> None:
        """Add one duration (negative ones count as 0, past an hour as an hour)."""
        seconds = max(0.0, seconds)
        us = min(_HIGHEST_US, max(_LOWEST_US, round(seconds * 1e6)))
        self._hdr.record_value(us)
        self._n += 1
        self._sum += seconds
        self._min = min(self._min, seconds)
        self._max = max(self._max, seconds)

    @property
    def count(self) -> int:
        return self._n

    @property
    def max(self) -> float:
        """The exact largest duration recorded (0 when empty)."""
        return self._max

    @property
    def min(self) -> float:
        """The exact smallest duration recorded (0 when empty)."""
        return self._min if self._n else 0.0

    @property
    def mean(self) -> float:
        return self._sum / self._n if self._n else 0.0

    def percentile(self, q: float) -> float:
        """The nearest-rank ``q`` quantile (``0 <= q <= 1``): the value of rank
        ``max(1, round(q * count))`` (halves rounded up) in ascending order,
        within the stated error; 0 when empty."""
        return self.percentiles((q,))[q]

    def percentiles(self, qs: Iterable[float]) -> dict[float, float]:
        """:meth:`percentile` of each of ``qs``, in one pass over the buckets."""
        qs = tuple(qs)
        for q in qs:
            if not 0 <= q <= 1:
                raise ValueError(f"quantile must be in [0, 1], got {q!r}")
        if not self._n:
            return dict.fromkeys(qs, 0.0)
        by_pct = self._hdr.get_percentile_to_value_dict([q * 100 for q in qs])
        return {q: min(self._max, by_pct[q * 100] / 1e6) for q in qs}
