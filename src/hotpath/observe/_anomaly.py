"""Anomaly detection: shifts in latency, error rate, hit rate and spend rate, per key.

:class:`AnomalyMonitor` keeps one :class:`~hotpath.observe._anomaly_detector.Detector`
per ``(signal, key)`` -- a key is what the caller names, e.g. ``model:gpt-4o-mini``
or ``upstream:openai``. The request path only adds to the open window's sums
(``observe_*``: a dict lookup and a few additions, no clock read); :meth:`tick`,
called about once a second, closes the window every ``window`` seconds and lets
each detector judge it, off the request path. See docs/anomaly.md for the method
and its measured delays and false alarms.

    monitor = AnomalyMonitor(on_alert=print)
    monitor.observe_latency("model:gpt-4o-mini", 0.42)   # per request
    monitor.observe_outcome("upstream:openai", error=False)
    alerts = monitor.tick()                               # from a 1 s loop

Every window that closes judges every series, so a tick that closes one costs
a few microseconds per series; the number of series is bounded (``max_series``):
a new one beyond it evicts the series that has gone longest without data.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from hotpath._clock import Clock, SystemClock
from hotpath._errors import ConfigError
from hotpath._options import check_count, check_positive, check_text
from hotpath.observe._anomaly_detector import (
    LATENCY_MAX,
    LATENCY_MIN,
    LOG_LATENCY_MAX,
    LOG_LATENCY_MIN,
    Detector,
    Sums,
    binomial_z,
)
from hotpath.observe._anomaly_settings import SIGNALS, Alert, DetectorSettings, Direction, Signal

__all__ = [
    "SIGNALS",
    "Alert",
    "AnomalyMonitor",
    "AnomalyStats",
    "Detector",
    "DetectorSettings",
    "Direction",
    "Signal",
    "binomial_z",
]

log = logging.getLogger("hotpath.observe")

_log = math.log


@dataclass(frozen=True, kw_only=True, slots=True)
class AnomalyStats:
    """A snapshot of an :class:`AnomalyMonitor`: ``series`` kept, ``evicted`` so far,
    ``windows`` closed, alerts ``raised`` and ``cleared`` so far, ``active`` now."""

    series: int
    evicted: int
    windows: int
    raised: int
    cleared: int
    active: int


class AnomalyMonitor:
    """Many detectors keyed by ``(signal, key)``, bounded in number.

    ``window`` [5.0] seconds of clock time per judged window; ``settings`` how
    each detector judges; ``max_series`` [1000] detectors kept at most;
    ``on_alert`` is called with each alert :meth:`tick` returns (its exceptions are
    logged, not raised). A series evicted while alerting is reported cleared by the
    next tick. Not thread-safe: call it from one thread (the event loop).
    """

    __slots__ = (
        "_active",
        "_cache",
        "_cleared",
        "_clock",
        "_evicted",
        "_latency",
        "_max_series",
        "_on_alert",
        "_opened",
        "_outcome",
        "_pending",
        "_raised",
        "_series",
        "_settings",
        "_spend",
        "_tables",
        "_window",
        "_windows",
    )

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        window: float = 5.0,
        on_alert: Callable[[Alert], None] | None = None,
        settings: DetectorSettings | None = None,
        max_series: int = 1000,
    ) -> None:
        if settings is None:
            settings = DetectorSettings()
        elif not isinstance(settings, DetectorSettings):
            raise ConfigError(f"settings must be a DetectorSettings, got {settings!r}")
        if on_alert is not None and not callable(on_alert):
            raise ConfigError(f"on_alert must be callable, got {on_alert!r}")
        self._settings = settings
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._window = check_positive(window, "window")
        self._max_series = check_count(max_series, "max_series")
        self._on_alert = on_alert
        # key -> the open window's sums, one table per signal: the request path's lookup
        self._latency: dict[str, Sums] = {}
        self._outcome: dict[str, Sums] = {}
        self._cache: dict[str, Sums] = {}
        self._spend: dict[str, Sums] = {}
        self._tables: dict[Signal, dict[str, Sums]] = {
            "latency": self._latency,
            "error_rate": self._outcome,
            "hit_rate": self._cache,
            "spend_rate": self._spend,
        }
        # every detector, the one longest without data first
        self._series: OrderedDict[tuple[Signal, str], Detector] = OrderedDict()
        self._active: dict[tuple[Signal, str], Alert] = {}
        self._pending: list[Alert] = []  # cleared by eviction, reported by the next tick
        self._opened = self._clock.monotonic()
        self._windows = self._evicted = self._raised = self._cleared = 0

    def __repr__(self) -> str:
        return (
            f"AnomalyMonitor(window={self._window!r}, series={len(self._series)}, "
            f"active={len(self._active)})"
        )

    # -- the request path -------------------------------------------------------------

    def observe_latency(self, key: str, seconds: float) -> None:
        """One request's latency in seconds (clamped to [1 us, 1e6 s]; NaN ignored)."""
        sums = self._latency.get(key)
        if sums is None:
            sums = self._open("latency", key)
        if seconds > LATENCY_MIN:
            x = _log(seconds) if seconds < LATENCY_MAX else LOG_LATENCY_MAX
        elif seconds >= 0:
            x = LOG_LATENCY_MIN
        else:
            return  # NaN or negative: not a measurement
        sums.count += 1
        sums.total += x
        sums.square += x * x

    def observe_outcome(self, key: str, *, error: bool) -> None:
        """One request's outcome, for the error rate."""
        sums = self._outcome.get(key)
        if sums is None:
            sums = self._open("error_rate", key)
        sums.count += 1
        if error:
            sums.total += 1

    def observe_cache(self, key: str, *, hit: bool) -> None:
        """One cache lookup, for the hit rate."""
        sums = self._cache.get(key)
        if sums is None:
            sums = self._open("hit_rate", key)
        sums.count += 1
        if hit:
            sums.total += 1

    def observe_spend(self, key: str, usd: float) -> None:
        """One request's cost in USD, for the spend rate (negative and NaN ignored)."""
        sums = self._spend.get(key)
        if sums is None:
            sums = self._open("spend_rate", key)
        if usd >= 0:
            sums.count += 1
            sums.total += usd
            sums.square += usd * usd

    def _open(self, signal: Signal, key: str) -> Sums:
        detector = Detector(signal, check_text(key, "key"), self._settings)
        if len(self._series) >= self._max_series:
            self._evict()
        self._series[(signal, key)] = detector
        self._tables[signal][key] = detector.sums
        return detector.sums

    def _evict(self) -> None:
        name, _ = self._series.popitem(last=False)
        del self._tables[name[0]][name[1]]
        self._evicted += 1
        alert = self._active.pop(name, None)
        if alert is not None:
            self._cleared += 1
            # its alert goes with it, reported cleared (with the figures it was raised on)
            self._pending.append(dataclasses.replace(alert, kind="cleared", at=self._clock.now()))

    # -- off the request path ---------------------------------------------------------

    def tick(self) -> list[Alert]:
        """Close the window if ``window`` seconds have passed since the last one closed
        and judge it in every series; return the alerts raised or cleared (and pass
        each to ``on_alert``). Call it about once a second; a late call closes one
        longer window."""
        out, self._pending = self._pending, []
        now = self._clock.monotonic()
        elapsed = now - self._opened
        if elapsed >= self._window:
            self._opened = now
            self._windows += 1
            at = self._clock.now()
            series = self._series
            for name, detector in list(series.items()):
                if detector.fed:
                    series.move_to_end(name)  # fed this window: now the most recent
                alert = detector.close(elapsed, at)
                if alert is None:
                    continue
                out.append(alert)
                if alert.kind == "raised":
                    self._active[name] = alert
                    self._raised += 1
                else:
                    self._active.pop(name, None)
                    self._cleared += 1
        if self._on_alert is not None:
            for alert in out:
                try:
                    self._on_alert(alert)
                except Exception:  # the alert is reported by tick all the same
                    log.exception("anomaly monitor: on_alert hook failed")
        return out

    def active(self) -> list[Alert]:
        """The alerts standing, as raised, oldest first."""
        return list(self._active.values())

    def detector(self, signal: Signal, key: str) -> Detector | None:
        """The detector of ``signal`` on ``key``, if it is kept."""
        return self._series.get((signal, key))

    @property
    def settings(self) -> DetectorSettings:
        return self._settings

    @property
    def window(self) -> float:
        return self._window

    def stats(self) -> AnomalyStats:
        return AnomalyStats(
            series=len(self._series),
            evicted=self._evicted,
            windows=self._windows,
            raised=self._raised,
            cleared=self._cleared,
            active=len(self._active),
        )
