"""What a run against one target measured: frozen dataclasses, JSON-ready.

Times are seconds. Latency and time to first token count from each request's
intended send time and cover the answered requests (status 200, complete); the
failed ones are counted in ``errors`` by kind. Each per-second row is one second
of intended send times after the warm-up, except ``completed``, counted by the
second the answer finished (that column is the throughput).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from hotpath.loadgen._histogram import LatencyHistogram

__all__ = ["QUANTILES", "Percentiles", "Second", "TargetResult"]

#: The quantiles of every summary: p50, p90, p99, p99.9.
QUANTILES = (0.5, 0.9, 0.99, 0.999)


@dataclass(frozen=True, slots=True, kw_only=True)
class Percentiles:
    """A distribution of durations (seconds) from a :class:`LatencyHistogram`."""

    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    p999: float
    max: float

    @classmethod
    def of(cls, hist: LatencyHistogram) -> Percentiles:
        q = hist.percentiles(QUANTILES)
        return cls(
            count=hist.count,
            mean=hist.mean,
            p50=q[0.5],
            p90=q[0.9],
            p99=q[0.99],
            p999=q[0.999],
            max=hist.max,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Second:
    """One second of the run (``t``: seconds after the warm-up, from 0)."""

    t: int
    sent: int
    ok: int
    errors: int
    completed: int
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None
    ttft_p50: float | None
    ttft_p99: float | None
    hits: int
    lookups: int

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.lookups if self.lookups else None


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetResult:
    """One target's run.

    ``sent`` counts the measured requests (the warm-up's are in
    ``warmup_requests``); ``window`` runs from the end of the warm-up to the last
    measured answer, and ``throughput`` is ``ok / window``. ``offered_rate`` is the
    open loop's measured requests per second of schedule (``None`` in a closed
    loop). ``lag`` is the open loop's send lag. ``cache`` counts the gateway's
    ``x-hotpath-cache`` answers (``hit:<tier>``, ``miss``, ``bypass``...), empty
    when no answer carried the header. ``distinct_texts`` and
    ``distinct_meanings`` count the different request texts and meanings sent.
    """

    name: str
    url: str
    load: str
    workload: str
    window: float
    sent: int
    ok: int
    warmup_requests: int
    errors: dict[str, int]
    offered_rate: float | None
    throughput: float
    latency: Percentiles | None  # None: nothing was answered
    ttft: Percentiles | None
    lag: Percentiles | None
    cache: dict[str, int]
    coalesced: int
    prompt_tokens: int
    completion_tokens: int
    distinct_texts: int
    distinct_meanings: int
    series: tuple[Second, ...]

    @property
    def hits(self) -> int:
        return sum(n for k, n in self.cache.items() if k.startswith("hit"))

    @property
    def hit_rate(self) -> float | None:
        """Hits over the answers that carried ``x-hotpath-cache``; ``None``: none did."""
        total = sum(self.cache.values())
        return self.hits / total if total else None

    def hits_by_tier(self) -> dict[str, int]:
        return {k.partition(":")[2]: n for k, n in self.cache.items() if k.startswith("hit")}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; every duration in seconds."""
        out = asdict(self)
        out["series"] = [asdict(s) | {"hit_rate": s.hit_rate} for s in self.series]
        out["hit_rate"] = self.hit_rate
        out["error_count"] = sum(self.errors.values())
        return out
