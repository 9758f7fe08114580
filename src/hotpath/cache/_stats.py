"""Frozen statistics snapshots and the mutable counters behind them."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CacheStats", "LatencyRecorder", "LatencyStats", "TierCounters", "TierStats"]


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Latency of recent sampled operations, in microseconds."""

    samples: int
    p50_us: float
    p99_us: float
    max_us: float


class LatencyRecorder:
    """A ring buffer of recent latency samples (seconds); cheap to record into."""

    __slots__ = ("_buf", "_i", "_n", "_size")

    def __init__(self, size: int = 2048) -> None:
        self._size = size
        self._buf = [0.0] * size
        self._i = 0
        self._n = 0

    def record(self, seconds: float) -> None:
        self._buf[self._i] = seconds
        self._i = (self._i + 1) % self._size
        if self._n < self._size:
            self._n += 1

    def snapshot(self) -> LatencyStats:
        if self._n == 0:
            return LatencyStats(0, 0.0, 0.0, 0.0)
        data = sorted(self._buf[: self._n])
        n = len(data)
        return LatencyStats(
            samples=n,
            p50_us=data[(n - 1) // 2] * 1e6,
            p99_us=data[min(n - 1, round(0.99 * (n - 1)))] * 1e6,
            max_us=data[-1] * 1e6,
        )


@dataclass(frozen=True, slots=True)
class TierStats:
    """One tier's counters at a point in time.

    ``entries`` and ``bytes`` are what the tier holds now (``-1`` when the backend
    cannot tell cheaply). ``healthy`` is false while a backend fault has the tier
    bypassed; ``errors`` counts backend faults since start.
    """

    name: str
    healthy: bool
    hits: int
    misses: int
    sets: int
    deletes: int
    evictions: int
    expirations: int
    errors: int
    entries: int
    bytes: int
    latency: LatencyStats

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class TierCounters:
    """Mutable counters a tier increments; :meth:`snapshot` freezes them."""

    __slots__ = (
        "deletes",
        "errors",
        "evictions",
        "expirations",
        "hits",
        "latency",
        "misses",
        "sets",
    )

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.sets = 0
        self.deletes = 0
        self.evictions = 0
        self.expirations = 0
        self.errors = 0
        self.latency = LatencyRecorder()

    def snapshot(self, name: str, *, healthy: bool, entries: int, nbytes: int) -> TierStats:
        return TierStats(
            name=name,
            healthy=healthy,
            hits=self.hits,
            misses=self.misses,
            sets=self.sets,
            deletes=self.deletes,
            evictions=self.evictions,
            expirations=self.expirations,
            errors=self.errors,
            entries=entries,
            bytes=nbytes,
            latency=self.latency.snapshot(),
        )


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A :class:`~hotpath.cache.TieredCache`'s counters, overall and per tier.

    ``hits``/``misses`` count lookups of the whole cache (a hit in any tier is a
    hit). ``loads`` counts loader calls, ``coalesced`` the ``get_or_load`` callers
    that shared a load already in flight (in this process or another replica's),
    ``refreshes`` the early background reloads, ``invalidations_received`` the
    coherence messages from other processes applied to L1.
    """

    hits: int
    misses: int
    loads: int
    load_errors: int
    coalesced: int
    refreshes: int
    invalidations_received: int
    tiers: tuple[TierStats, ...]

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def tier(self, name: str) -> TierStats:
        """The stats of the tier called ``name`` (``KeyError`` if there is none)."""
        for t in self.tiers:
            if t.name == name:
                return t
        raise KeyError(name)
