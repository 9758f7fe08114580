"""The dashboard's numbers: a snapshot of the gateway's Prometheus counters, and
the point between two snapshots (rates per second, quantiles of the interval).

Pure functions over ``prometheus_client`` metric families, so the same code reads
one process's registry and the multiprocess view summed over workers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric

__all__ = ["DashboardPoint", "Snapshot", "point_between", "quantile", "snapshot"]

#: Routes that are not client traffic: left out of request rates, errors, latency.
_OPERATIONS = frozenset({"/metrics", "/healthz", "/readyz"})
_QUANTILES = (0.5, 0.95, 0.99)
#: At most this many series per breakdown (errors, breakers, limits) in a point,
#: the largest kept: a chart of more is unreadable and the payload must stay bounded.
MAX_SERIES = 12

_REFUSALS = {
    "hotpath_shed_requests": "shed",
    "hotpath_circuit_breaker_rejections": "breaker open",
    "hotpath_budget_refusals": "over budget",
}


def is_client_route(route: str) -> bool:
    """Whether ``route`` (the ``route`` label) is API traffic rather than operations."""
    return not (route in _OPERATIONS or route.startswith(("/dashboard", "/admin")))


@dataclass(slots=True)
class Snapshot:
    """Cumulative values read from the registry at one moment (gauges as they stand)."""

    requests: float = 0.0
    statuses: dict[str, float] = field(default_factory=dict)
    latency: dict[float, float] = field(default_factory=dict)
    ttft: dict[float, float] = field(default_factory=dict)
    hits: dict[str, float] = field(default_factory=dict)
    misses: float = 0.0
    bypass: float = 0.0
    tokens: dict[str, float] = field(default_factory=dict)
    cost: float = 0.0
    saved: float = 0.0
    failures: dict[str, float] = field(default_factory=dict)
    in_flight: float = 0.0
    breakers: dict[str, float] = field(default_factory=dict)
    limits: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DashboardPoint:
    """One sampling interval, ending at ``t`` (seconds since the epoch) and
    ``dt`` seconds long. Rates are per second. ``latency`` and ``ttft`` are the
    p50, p95 and p99 in seconds of the requests that ended in the interval
    (``None`` when none did). ``errors`` maps a kind (``HTTP 429``, ``upstream:
    timeout``, ``rate limited``, ``shed``, ...) to its rate. ``breakers`` (0 closed,
    1 open, 2 half-open) and ``limits`` are gauges by deployment. ``total`` holds
    counts since the gateway started: ``requests``, ``hits``, ``lookups``,
    ``errors``, ``tokens``, ``cost`` and ``saved`` (USD)."""

    seq: int
    t: float
    dt: float
    rps: float
    in_flight: float
    latency: tuple[float | None, float | None, float | None]
    ttft: tuple[float | None, float | None, float | None]
    hits: dict[str, float]
    misses: float
    bypass: float
    tokens: dict[str, float]
    cost: float
    saved: float
    errors: dict[str, float]
    breakers: dict[str, float]
    limits: dict[str, float]
    total: dict[str, float]


def _add(into: dict[str, float], key: str, value: float) -> None:
    into[key] = into.get(key, 0.0) + value


def _bucket(into: dict[float, float], le: str, value: float) -> None:
    bound = math.inf if le == "+Inf" else float(le)
    into[bound] = into.get(bound, 0.0) + value


def snapshot(families: Iterable[Metric]) -> Snapshot:
    """The values the dashboard shows, summed over the label sets it does not split
    by. Families it does not know are skipped, so new metrics cost nothing."""
    snap = Snapshot()
    for family in families:
        name = family.name
        reader = _READERS.get(name)
        if reader is not None:
            reader(snap, family)
        elif name in _REFUSALS:
            kind = _REFUSALS[name]
            for s in family.samples:
                if s.name.endswith("_total"):
                    _add(snap.failures, kind, s.value)
    return snap


def _requests(snap: Snapshot, family: Metric) -> None:
    for s in family.samples:
        if not s.name.endswith("_total") or not is_client_route(s.labels.get("route", "")):
            continue
        snap.requests += s.value
        status = s.labels.get("status", "")
        if status[:1] in ("4", "5"):
            _add(snap.statuses, f"HTTP {status}", s.value)


def _latency(snap: Snapshot, family: Metric) -> None:
    for s in family.samples:
        if s.name.endswith("_bucket") and is_client_route(s.labels.get("route", "")):
            _bucket(snap.latency, s.labels["le"], s.value)


def _ttft(snap: Snapshot, family: Metric) -> None:
    for s in family.samples:
        if s.name.endswith("_bucket"):
            _bucket(snap.ttft, s.labels["le"], s.value)


def _cache(snap: Snapshot, family: Metric) -> None:
    for s in family.samples:
        if not s.name.endswith("_total"):
            continue
        outcome = s.labels.get("outcome")
        if outcome == "hit":
            _add(snap.hits, s.labels.get("tier") or "cache", s.value)
        elif outcome == "miss":
            snap.misses += s.value
        elif outcome == "bypass":
            snap.bypass += s.value


#: Upstream outcomes (``ok``, ``cancelled``, ``error`` or an exception's name) as
#: error kinds; a call cancelled because its clients left is no error.
_UPSTREAM = {
    "ok": None,
    "cancelled": None,
    "UpstreamStatusError": "upstream: error status",
    "UpstreamTimeoutError": "upstream: timeout",
    "UpstreamUnavailableError": "upstream: unreachable",
    "UpstreamStreamCutError": "upstream: stream cut",
}


def _upstream(snap: Snapshot, family: Metric) -> None:
    for s in family.samples:
        if not s.name.endswith("_total"):
            continue
        outcome = s.labels.get("outcome", "")
        kind = _UPSTREAM.get(outcome, f"upstream: {outcome}")
        if kind is not None:
            _add(snap.failures, kind, s.value)


def _rate_limited(snap: Snapshot, family: Metric) -> None:
    for s in family.samples:
        if s.name.endswith("_total") and s.labels.get("outcome") == "limited":
            _add(snap.failures, "rate limited", s.value)


def _tokens(snap: Snapshot, family: Metric) -> None:
    for s in family.samples:
        if s.name.endswith("_total"):
            _add(snap.tokens, s.labels.get("kind", ""), s.value)


def _cost(snap: Snapshot, family: Metric) -> None:
    snap.cost = sum(s.value for s in family.samples if s.name.endswith("_total"))


def _saved(snap: Snapshot, family: Metric) -> None:
    snap.saved = sum(s.value for s in family.samples if s.name.endswith("_total"))


def _in_flight(snap: Snapshot, family: Metric) -> None:
    snap.in_flight = sum(s.value for s in family.samples)


def _breakers(snap: Snapshot, family: Metric) -> None:
    for s in family.samples:
        snap.breakers[s.labels.get("deployment", "")] = s.value


def _limits(snap: Snapshot, family: Metric) -> None:
    for s in family.samples:
        snap.limits[s.labels.get("deployment", "")] = s.value


_READERS = {
    "hotpath_requests": _requests,
    "hotpath_request_duration_seconds": _latency,
    "hotpath_time_to_first_token_seconds": _ttft,
    "hotpath_cache_lookups": _cache,
    "hotpath_upstream_requests": _upstream,
    "hotpath_rate_limit_decisions": _rate_limited,
    "hotpath_tokens": _tokens,
    "hotpath_cost_usd": _cost,
    "hotpath_saved_usd": _saved,
    "hotpath_in_flight_requests": _in_flight,
    "hotpath_circuit_breaker_state": _breakers,
    "hotpath_concurrency_limit": _limits,
}


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The ``q`` quantile of a histogram given as upper bound -> cumulative count,
    interpolated within its bucket as Prometheus's ``histogram_quantile`` does
    (the highest finite bound when it falls in the ``+Inf`` bucket); ``None``
    when the histogram is empty."""
    bounds = sorted(buckets)
    if not bounds:
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            if inside <= 0:
                return bound
            return lower + (bound - lower) * (rank - below) / inside
        lower, below = bound, count
    return lower


def _quantiles(
    cur: Mapping[float, float], prev: Mapping[float, float]
) -> tuple[float | None, float | None, float | None]:
    delta = {b: max(0.0, v - prev.get(b, 0.0)) for b, v in cur.items()}
    p50, p95, p99 = (quantile(q, delta) for q in _QUANTILES)
    return p50, p95, p99


def _rates(cur: Mapping[str, float], prev: Mapping[str, float], dt: float) -> dict[str, float]:
    out = {}
    for key, value in cur.items():
        change = value - prev.get(key, 0.0)
        if change > 0:
            out[key] = change / dt
    return _largest(out)


def _largest(values: dict[str, float]) -> dict[str, float]:
    if len(values) <= MAX_SERIES:
        return values
    kept = sorted(values.items(), key=lambda kv: kv[1], reverse=True)[:MAX_SERIES]
    return dict(kept)


def point_between(
    prev: Snapshot, cur: Snapshot, *, seq: int, t: float, dt: float
) -> DashboardPoint:
    """The point for the interval from ``prev`` to ``cur`` (``dt`` seconds, > 0).
    Counters that went down (a worker restarted in multiprocess mode) count as
    unchanged."""
    errors = _rates(cur.statuses, prev.statuses, dt)
    errors.update(_rates(cur.failures, prev.failures, dt))
    hits = sum(cur.hits.values())
    return DashboardPoint(
        seq=seq,
        t=t,
        dt=dt,
        rps=max(0.0, cur.requests - prev.requests) / dt,
        in_flight=cur.in_flight,
        latency=_quantiles(cur.latency, prev.latency),
        ttft=_quantiles(cur.ttft, prev.ttft),
        hits=_rates(cur.hits, prev.hits, dt),
        misses=max(0.0, cur.misses - prev.misses) / dt,
        bypass=max(0.0, cur.bypass - prev.bypass) / dt,
        tokens=_rates(cur.tokens, prev.tokens, dt),
        cost=max(0.0, cur.cost - prev.cost) / dt,
        saved=max(0.0, cur.saved - prev.saved) / dt,
        errors=_largest(errors),
        breakers=_largest(dict(cur.breakers)),
        limits=_largest(dict(cur.limits)),
        total={
            "requests": cur.requests,
            "hits": hits,
            "lookups": hits + cur.misses,
            "errors": sum(cur.statuses.values()),
            "tokens": cur.tokens.get("prompt", 0.0) + cur.tokens.get("completion", 0.0),
            "cost": cur.cost,
            "saved": cur.saved,
        },
    )
