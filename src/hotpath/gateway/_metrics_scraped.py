"""The scraped families of the gateway's metrics: read from stats snapshots when
``/metrics`` is asked for, not counted on the request path.

:func:`scraped_samples` reads the cache tiers' and the concurrency limiters'
stats; :class:`ScrapedCollector` yields them to a one-process registry, and
:class:`~hotpath.gateway._metrics.GatewayMetrics` publishes them into the shared
files when several workers serve (docs/metrics.md, "Several workers").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from hotpath.cache import TieredCache
    from hotpath.traffic._concurrency import ConcurrencyLimiter

__all__ = ["SCRAPED", "Samples", "ScrapedCollector", "ScrapedFamily", "scraped_samples"]


@dataclass(frozen=True, slots=True)
class ScrapedFamily:
    """A family read from a stats snapshot at scrape time; ``mode`` is how a gauge
    combines across worker processes (prometheus_client's ``multiprocess_mode``)."""

    name: str
    kind: Literal["counter", "gauge"]
    help: str
    labels: tuple[str, ...]
    mode: Literal["livesum", "livemax", "livemin"] = "livesum"  # gauges only


SCRAPED = (
    ScrapedFamily(
        "hotpath_cache_tier_entries",
        "gauge",
        "Entries a cache tier holds (tiers that cannot tell cheaply, e.g. Redis, are absent)",
        ("tier",),
        "livemax",
    ),
    ScrapedFamily(
        "hotpath_cache_tier_bytes",
        "gauge",
        "Bytes of values a cache tier holds (absent where the tier cannot tell cheaply)",
        ("tier",),
        "livemax",
    ),
    ScrapedFamily(
        "hotpath_cache_tier_healthy",
        "gauge",
        "1 while a cache tier answers, 0 while a backend fault has it bypassed",
        ("tier",),
        "livemin",
    ),
    ScrapedFamily(
        "hotpath_cache_tier_operations",
        "counter",
        "Operations on a cache tier: hit, miss, set, delete",
        ("tier", "operation"),
    ),
    ScrapedFamily(
        "hotpath_cache_tier_evictions",
        "counter",
        "Entries a cache tier dropped to stay within its bounds",
        ("tier",),
    ),
    ScrapedFamily(
        "hotpath_cache_tier_expirations",
        "counter",
        "Entries a cache tier dropped because their TTL passed",
        ("tier",),
    ),
    ScrapedFamily(
        "hotpath_cache_tier_errors",
        "counter",
        "Backend faults of a cache tier (Redis down, a corrupt SQLite file)",
        ("tier",),
    ),
    ScrapedFamily(
        "hotpath_concurrency_queued_requests",
        "gauge",
        "Upstream tries waiting for a concurrency slot, by deployment and priority class",
        ("deployment", "priority"),
        "livesum",
    ),
    ScrapedFamily(
        "hotpath_concurrency_in_flight",
        "gauge",
        "Upstream tries holding a concurrency slot, by deployment",
        ("deployment",),
        "livesum",
    ),
)

#: Scraped values: family name -> [(label values, value), ...].
Samples = Mapping[str, Sequence[tuple[tuple[str, ...], float]]]


def scraped_samples(
    cache: TieredCache | None,
    limiters: Mapping[str, ConcurrencyLimiter],
    bounded: Callable[[str], str],
) -> Samples:
    """The scraped families' values now: the cache's per-tier stats and the
    concurrency limiters' queues (deployment names bounded like every label)."""
    out: dict[str, dict[tuple[str, ...], float]] = {f.name: {} for f in SCRAPED}

    def add(name: str, labels: tuple[str, ...], value: float) -> None:
        rows = out[name]
        rows[labels] = rows.get(labels, 0.0) + value

    if cache is not None:
        for tier in cache.stats().tiers:
            label = (tier.name,)
            if tier.entries >= 0:
                add("hotpath_cache_tier_entries", label, tier.entries)
            if tier.bytes >= 0:
                add("hotpath_cache_tier_bytes", label, tier.bytes)
            healthy = out["hotpath_cache_tier_healthy"]
            healthy[label] = min(healthy.get(label, 1.0), 1.0 if tier.healthy else 0.0)
            for operation, count in (
                ("hit", tier.hits),
                ("miss", tier.misses),
                ("set", tier.sets),
                ("delete", tier.deletes),
            ):
                add("hotpath_cache_tier_operations", (tier.name, operation), count)
            add("hotpath_cache_tier_evictions", label, tier.evictions)
            add("hotpath_cache_tier_expirations", label, tier.expirations)
            add("hotpath_cache_tier_errors", label, tier.errors)
    # A copy: a request may add a deployment while this runs.
    for name, limiter in list(limiters.items()):
        stats = limiter.stats()
        deployment = bounded(name)
        for priority, queued in stats.queued.items():
            add("hotpath_concurrency_queued_requests", (deployment, priority), queued)
        add("hotpath_concurrency_in_flight", (deployment,), stats.inflight)
    return {name: list(rows.items()) for name, rows in out.items()}


class ScrapedCollector(Collector):
    """Yields the last snapshot of the scraped families (one process)."""

    def __init__(self) -> None:
        self.samples: Samples = {}

    def describe(self) -> Iterable[Metric]:
        return list(self._families({}))

    def collect(self) -> Iterable[Metric]:
        return list(self._families(self.samples))

    @staticmethod
    def _families(samples: Samples) -> Iterator[Metric]:
        for family in SCRAPED:
            metric: CounterMetricFamily | GaugeMetricFamily
            if family.kind == "counter":
                metric = CounterMetricFamily(family.name, family.help, labels=family.labels)
            else:
                metric = GaugeMetricFamily(family.name, family.help, labels=family.labels)
            for labels, value in samples.get(family.name, ()):
                metric.add_metric(list(labels), value)
            yield metric
