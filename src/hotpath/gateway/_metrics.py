"""The gateway's Prometheus metrics (prometheus_client); the catalog is docs/metrics.md.

Each gateway owns a registry, so several gateways in one process (tests) do not
collide. With several worker processes ``hotpath serve`` sets
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` sums every worker's values
(prometheus_client's multiprocess mode); each gauge says how workers combine.

Most metrics are counted on the request path. The *scraped* families (cache tier
sizes, evictions and health, concurrency queues) are read from the stats
snapshots of the cache and the limiters when ``/metrics`` is asked for
(:meth:`GatewayMetrics.watch`), so they cost the request path nothing. With
several workers each worker publishes its own snapshot into the shared files
every few seconds and on each scrape it answers (:meth:`GatewayMetrics.sample`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from hotpath.gateway._metrics_scraped import SCRAPED, Samples, ScrapedCollector, scraped_samples

__all__ = ["MAX_LABELS", "SCRAPED", "GatewayMetrics", "Samples", "scraped_samples"]

_LATENCY = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)

# Gateway overhead is sub-millisecond when all is well: finer buckets at the bottom.
_OVERHEAD = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

MAX_LABELS = 200
_MAX_LABEL_LENGTH = 128


class GatewayMetrics:
    """Counters and histograms of one gateway; :meth:`render` is ``/metrics``."""

    def __init__(self) -> None:
        self._multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "hotpath_requests", "HTTP requests answered", ["route", "status"], registry=r
        )
        self.model_requests = Counter(
            "hotpath_model_requests",
            "Chat and embeddings requests by public model, cache outcome and status",
            ["route", "model", "cache", "status"],
            registry=r,
        )
        self.overhead = Histogram(
            "hotpath_gateway_overhead_seconds",
            "Time a request that called the upstream spent in the gateway: its whole "
            "time minus the time of its upstream tries",
            ["route"],
            buckets=_OVERHEAD,
            registry=r,
        )
        self.latency = Histogram(
            "hotpath_request_duration_seconds",
            "Time from request to the end of the response",
            ["route", "cache"],
            buckets=_LATENCY,
            registry=r,
        )
        self.ttft = Histogram(
            "hotpath_time_to_first_token_seconds",
            "Time from request to the first streamed chunk",
            ["cache"],
            buckets=_LATENCY,
            registry=r,
        )
        self.cache = Counter(
            "hotpath_cache_lookups",
            "Cache outcomes: hit (by tier), miss, bypass",
            ["route", "outcome", "tier"],
            registry=r,
        )
        self.upstream = Counter(
            "hotpath_upstream_requests",
            "Calls made to upstreams, by outcome (ok, error status, timeout, ...)",
            ["upstream", "route", "outcome"],
            registry=r,
        )
        self.upstream_latency = Histogram(
            "hotpath_upstream_duration_seconds",
            "Duration of upstream calls",
            ["upstream", "route"],
            buckets=_LATENCY,
            registry=r,
        )
        self.coalesced = Counter(
            "hotpath_coalesced_requests",
            "Requests that joined an identical request in flight",
            ["route"],
            registry=r,
        )
        self.in_flight = Gauge(
            "hotpath_in_flight_requests",
            "Requests being answered",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.rate_limited = Counter(
            "hotpath_rate_limit_decisions",
            "Rate-limit decisions: at the front door (request) or per deployment; "
            "allowed, queued (admitted after a wait) or limited (refused)",
            ["scope", "outcome"],
            registry=r,
        )
        self.rate_limit_unavailable = Counter(
            "hotpath_rate_limit_redis_unavailable",
            "Rate-limit decisions taken without Redis (unreachable), by on_error: "
            "open (let through) or closed (refused)",
            ["on_error"],
            registry=r,
        )
        self.routed = Counter(
            "hotpath_routed_requests",
            "Upstream tries, by public model and the deployment the router chose",
            ["model", "deployment"],
            registry=r,
        )
        self.retries = Counter(
            "hotpath_retries",
            "Retries after a failed try, by deployment and error",
            ["deployment", "error"],
            registry=r,
        )
        self.retries_exhausted = Counter(
            "hotpath_retries_given_up",
            "Retryable failures not retried, by reason (attempts, elapsed, retry_after, budget)",
            ["reason"],
            registry=r,
        )
        self.fallbacks = Counter(
            "hotpath_fallbacks",
            "Requests that fell back from one model to another",
            ["source", "target"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "hotpath_circuit_breaker_state",
            "Circuit breaker state per deployment: 0 closed, 1 open, 2 half-open",
            ["deployment"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.breaker_transitions = Counter(
            "hotpath_circuit_breaker_transitions",
            "Circuit breaker transitions, by the state entered",
            ["deployment", "state"],
            registry=r,
        )
        self.breaker_rejections = Counter(
            "hotpath_circuit_breaker_rejections",
            "Tries refused because the deployment's breaker was open",
            ["deployment"],
            registry=r,
        )
        self.concurrency_limit = Gauge(
            "hotpath_concurrency_limit",
            "The adaptive concurrency limit of each deployment",
            ["deployment"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.shed = Counter(
            "hotpath_shed_requests",
            "Requests shed by a concurrency limiter (queue full or deadline)",
            ["deployment", "priority"],
            registry=r,
        )
        self.provider_waits = Counter(
            "hotpath_provider_pacing_waits",
            "Tries held back because the provider's rate-limit headers said to wait",
            ["deployment"],
            registry=r,
        )
        self.cost = Counter(
            "hotpath_cost_usd",
            "Upstream spend in USD by public model (calls whose model has a price)",
            ["model"],
            registry=r,
        )
        self.tokens = Counter(
            "hotpath_tokens",
            "Tokens billed upstream by public model and kind (prompt, completion, cached)",
            ["model", "kind"],
            registry=r,
        )
        self.unpriced = Counter(
            "hotpath_unpriced_calls",
            "Upstream calls whose model has no price: their cost is unknown",
            ["model"],
            registry=r,
        )
        self.saved = Counter(
            "hotpath_saved_usd",
            "Upstream spend avoided by cache hits and coalesced requests, in USD",
            ["model", "how"],
            registry=r,
        )
        self.saved_latency = Counter(
            "hotpath_saved_latency_seconds",
            "Upstream latency avoided by cache hits and coalesced requests",
            ["model", "how"],
            registry=r,
        )
        self.budget_events = Counter(
            "hotpath_budget_events",
            "Budget alerts, downgrades and exhaustions",
            ["budget", "kind"],
            registry=r,
        )
        self.budget_refused = Counter(
            "hotpath_budget_refusals",
            "Requests refused because a budget was used up or would be crossed",
            ["budget"],
            registry=r,
        )
        self.budget_ratio = Gauge(
            "hotpath_budget_used_ratio",
            "Share of a budget used (spent and reserved), as last seen by this process",
            ["budget"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.budget_store_errors = Counter(
            "hotpath_cost_store_errors",
            "Failed operations of the budget, usage and key stores (Redis or SQLite down)",
            ["store"],
            registry=r,
        )
        self.webhook_failures = Counter(
            "hotpath_alert_webhook_failures",
            "Budget and anomaly alert webhooks that could not be delivered",
            [],
            registry=r,
        )
        self.anomaly_alerts = Counter(
            "hotpath_anomaly_alerts",
            "Anomalies raised by the streaming detectors (docs/anomaly.md)",
            ["signal", "key", "direction"],
            registry=r,
        )
        self.anomaly_active = Gauge(
            "hotpath_anomaly_active",
            "1 while an anomaly of this signal and key stands",
            ["signal", "key"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self._children: dict[tuple[Any, ...], Any] = {}
        self._labels: set[str] = set()
        self._sources: list[Callable[[], Samples]] = []
        self._scraped = ScrapedCollector()
        # With several workers the scraped families are real (file-backed) metrics
        # that each worker publishes into; counters advance by the snapshot's delta.
        self._published: dict[str, Any] = {}
        self._last: dict[tuple[str, tuple[str, ...]], float] = {}
        if self._multiprocess:
            for family in SCRAPED:
                if family.kind == "counter":
                    self._published[family.name] = Counter(
                        family.name, family.help, family.labels, registry=r
                    )
                else:
                    self._published[family.name] = Gauge(
                        family.name,
                        family.help,
                        family.labels,
                        registry=r,
                        multiprocess_mode=family.mode,
                    )
        else:
            r.register(self._scraped)

    @property
    def multiprocess(self) -> bool:
        """Whether values are shared with other worker processes."""
        return self._multiprocess

    def watch(self, source: Callable[[], Samples]) -> None:
        """Export the scraped families from ``source`` (called by :meth:`sample`)."""
        self._sources.append(source)

    def sample(self) -> None:
        """Read every watched source now; call it on the thread that owns them
        (the event loop) before :meth:`render`."""
        merged: dict[str, list[tuple[tuple[str, ...], float]]] = {}
        for source in self._sources:
            for name, rows in source().items():
                merged.setdefault(name, []).extend(rows)
        if not self._multiprocess:
            self._scraped.samples = merged
            return
        last = self._last
        for family in SCRAPED:
            metric = self._published[family.name]
            for labels, value in merged.get(family.name, ()):
                child = self.child(metric, *labels)
                if family.kind == "gauge":
                    child.set(value)
                    continue
                seen = last.get((family.name, labels), 0.0)
                # A counter that went down was reset (a new cache): count afresh.
                delta = value - seen if value >= seen else value
                if delta > 0:
                    child.inc(delta)
                last[(family.name, labels)] = value

    def retire(self) -> None:
        """This worker is going away: drop its live gauges from the shared files."""
        if self._multiprocess:
            mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    def bounded(self, value: str) -> str:
        """``value`` as a label, or ``other`` once 200 distinct values have been seen
        or if it is over 128 characters (model names can come from clients: the
        label set must stay bounded)."""
        labels = self._labels
        if value in labels:
            return value
        if len(labels) >= MAX_LABELS or len(value) > _MAX_LABEL_LENGTH:
            return "other"
        labels.add(value)
        return value

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, memoized (labels() costs a lock and a lookup)."""
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def render(self) -> bytes:
        if self._multiprocess:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
