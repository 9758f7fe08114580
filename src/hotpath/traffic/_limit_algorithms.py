"""Concurrency-limit algorithms: how many calls an upstream can take at once.

Each algorithm is a plain state machine fed one sample per finished call
(:meth:`LimitAlgorithm.update`): when it ended (``now``, monotonic seconds), how long it
took (``rtt``), how many calls were in flight when it started, and whether it was an
overload signal (a timeout, 429 or 503 -- a *drop*). It answers with the new limit.

* :class:`FixedLimit` -- a constant.
* :class:`AIMDLimit` -- loss based: +1 per round trip while busy, times ``backoff_ratio``
  on a drop (or a call slower than ``timeout``), at most once per round trip.
* :class:`VegasLimit` -- delay based: estimates the upstream's queue from the latency
  above its no-load baseline and keeps it between ``alpha`` and ``beta`` log10(limit).
* :class:`Gradient2Limit` -- delay based: scales the limit by the gradient
  ``rtt_tolerance * baseline / rtt`` (clamped to [0.5, 1]) plus a small ``queue_size``.

The delay-based algorithms aggregate samples into windows (``window`` seconds and at
least ``min_samples`` samples) and act on each window's mean latency: one call's latency
is noise, a window's mean is a measurement. Their no-load baseline follows a lower
window mean at once and a higher one only over ``long_window`` windows, so sustained load
does not quickly teach them that queueing is normal (the drift of a plain average).
"""

from __future__ import annotations

import math
from typing import Protocol

from hotpath._errors import ConfigError
from hotpath._options import check_count, check_positive

__all__ = [
    "AIMDLimit",
    "FixedLimit",
    "Gradient2Limit",
    "LimitAlgorithm",
    "VegasLimit",
    "algorithm_from_name",
]


class LimitAlgorithm(Protocol):
    """Finds a concurrency limit from samples of finished calls."""

    @property
    def limit(self) -> int:
        """The current limit (>= 1)."""
        ...

    def update(self, *, now: float, rtt: float, inflight: int, dropped: bool) -> int:
        """Feed one finished call; return the new limit.

        ``now`` is monotonic seconds at the end of the call, ``rtt`` its duration in
        seconds, ``inflight`` the calls in flight when it started (itself included),
        ``dropped`` whether it ended in an overload signal (timeout, 429, 503).
        """
        ...


def _check_bounds(initial: object, min_limit: object, max_limit: object) -> tuple[int, int, int]:
    lo = check_count(min_limit, "min_limit")
    hi = check_count(max_limit, "max_limit")
    start = check_count(initial, "initial")
    if lo > hi:
        raise ConfigError(f"min_limit must be <= max_limit, got {lo!r} > {hi!r}")
    if not lo <= start <= hi:
        raise ConfigError(f"initial must be within [min_limit, max_limit], got {start!r}")
    return start, lo, hi


def _check_fraction(value: object, name: str) -> float:
    out = check_positive(value, name)
    if out > 1:
        raise ConfigError(f"{name} must be in (0, 1], got {value!r}")
    return out


class FixedLimit:
    """A limit that never changes (a baseline, or an upstream with a known capacity)."""

    __slots__ = ("_limit",)

    def __init__(self, limit: int) -> None:
        self._limit = check_count(limit, "limit")

    @property
    def limit(self) -> int:
        return self._limit

    def update(self, *, now: float, rtt: float, inflight: int, dropped: bool) -> int:
        return self._limit

    def __repr__(self) -> str:
        return f"FixedLimit({self._limit})"


class AIMDLimit:
    """Additive increase, multiplicative decrease (TCP Reno's congestion avoidance).

    A call that ends without a drop and started while the limiter was at least half busy
    adds ``1 / limit`` -- one slot per round trip of a full limit. A drop, or a call that
    took longer than ``timeout`` seconds, multiplies the limit by ``backoff_ratio``; only
    once per round trip: calls that started before the last backoff were already in
    flight at the old limit and say nothing new. AIMD only reacts to drops, so ``timeout``
    is its latency target: set it a little above the latency you accept.
    """

    __slots__ = ("_backoff", "_last_backoff", "_limit", "_max", "_min", "_timeout")

    def __init__(
        self,
        *,
        initial: int = 20,
        min_limit: int = 1,
        max_limit: int = 1000,
        backoff_ratio: float = 0.9,
        timeout: float = 5.0,
    ) -> None:
        start, self._min, self._max = _check_bounds(initial, min_limit, max_limit)
        self._backoff = _check_fraction(backoff_ratio, "backoff_ratio")
        if self._backoff == 1:
            raise ConfigError(f"backoff_ratio must be in (0, 1), got {backoff_ratio!r}")
        self._timeout = check_positive(timeout, "timeout")
        self._limit = float(start)
        self._last_backoff = -math.inf

    @property
    def limit(self) -> int:
        return int(self._limit)

    def update(self, *, now: float, rtt: float, inflight: int, dropped: bool) -> int:
        if dropped or rtt > self._timeout:
            if now - rtt >= self._last_backoff:
                self._limit = max(float(self._min), self._limit * self._backoff)
                self._last_backoff = now
        elif inflight * 2 >= self._limit:
            self._limit = min(float(self._max), self._limit + 1 / self._limit)
        return int(self._limit)

    def __repr__(self) -> str:
        return f"AIMDLimit(limit={self.limit}, timeout={self._timeout!r})"


class _Window:
    """Samples of one measurement window."""

    __slots__ = ("count", "dropped", "max_inflight", "rtt_sum", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.count = 0
        self.dropped = 0
        self.rtt_sum = 0.0
        self.max_inflight = 0

    def add(self, rtt: float, inflight: int, dropped: bool) -> None:
        self.count += 1
        self.max_inflight = max(self.max_inflight, inflight)
        if dropped:
            self.dropped += 1
        else:
            self.rtt_sum += rtt

    def mean_rtt(self) -> float | None:
        kept = self.count - self.dropped
        return self.rtt_sum / kept if kept else None


class _Baseline:
    """The no-load latency: half-way down to a lower window mean at once, up to a higher
    one only over ``long_window`` windows."""

    __slots__ = ("_rise", "value")

    def __init__(self, long_window: int) -> None:
        self._rise = 1 / long_window
        self.value = 0.0

    def observe(self, rtt: float) -> float:
        if self.value <= 0:
            self.value = rtt
        elif rtt < self.value:
            self.value += (rtt - self.value) * 0.5
        else:
            self.value += (rtt - self.value) * self._rise
        return self.value


class _Windowed:
    """Shared plumbing of the delay-based algorithms: bounds, windows, baseline."""

    __slots__ = ("_baseline", "_limit", "_max", "_min", "_min_samples", "_window", "_window_s")

    def __init__(
        self,
        initial: int,
        min_limit: int,
        max_limit: int,
        window: float,
        min_samples: int,
        long_window: int,
    ) -> None:
        start, self._min, self._max = _check_bounds(initial, min_limit, max_limit)
        self._window_s = check_positive(window, "window")
        self._min_samples = check_count(min_samples, "min_samples")
        self._baseline = _Baseline(check_count(long_window, "long_window"))
        self._limit = float(start)
        self._window: _Window | None = None

    @property
    def limit(self) -> int:
        return int(self._limit)

    @property
    def baseline(self) -> float:
        """The no-load latency estimate in seconds (0 before the first window)."""
        return self._baseline.value

    def update(self, *, now: float, rtt: float, inflight: int, dropped: bool) -> int:
        win = self._window
        if win is None:
            win = self._window = _Window(now)
        win.add(rtt, inflight, dropped)
        if win.count >= self._min_samples and now - win.start >= self._window_s:
            self._window = _Window(now)
            new = self._adjust(win)
            self._limit = min(float(self._max), max(float(self._min), new))
        return int(self._limit)

    def _adjust(self, win: _Window) -> float:
        raise NotImplementedError


class VegasLimit(_Windowed):
    """TCP Vegas: ``queue = limit * (1 - baseline / rtt)`` is the number of calls the
    upstream holds beyond what it serves at no-load speed. Per window: a queue at most
    log10(limit) grows the limit by ``beta`` log10(limit) (fast, far from the knee);
    below ``alpha`` log10(limit) by log10(limit); above ``beta`` log10(limit), or a drop,
    shrinks it by log10(limit). ``smoothing`` (0, 1] damps each step.
    """

    __slots__ = ("_alpha", "_beta", "_smoothing")

    def __init__(
        self,
        *,
        initial: int = 20,
        min_limit: int = 1,
        max_limit: int = 1000,
        smoothing: float = 1.0,
        alpha: float = 3.0,
        beta: float = 6.0,
        window: float = 1.0,
        min_samples: int = 10,
        long_window: int = 600,
    ) -> None:
        super().__init__(initial, min_limit, max_limit, window, min_samples, long_window)
        self._smoothing = _check_fraction(smoothing, "smoothing")
        self._alpha = check_positive(alpha, "alpha")
        self._beta = check_positive(beta, "beta")
        if self._beta <= self._alpha:
            raise ConfigError(f"beta must be > alpha, got beta={beta!r}, alpha={alpha!r}")

    def _adjust(self, win: _Window) -> float:
        limit = self._limit
        mean = win.mean_rtt()
        log = max(1.0, math.log10(limit))
        if mean is None:
            return limit - log * self._smoothing  # every call of the window dropped
        base = self._baseline.observe(mean)
        if win.dropped:
            new = limit - log
        elif win.max_inflight * 2 < limit:
            return limit  # the caller, not the upstream, limits the rate: nothing learnt
        else:
            queue = limit * (1 - base / mean)
            if queue <= log:
                new = limit + self._beta * log
            elif queue < self._alpha * log:
                new = limit + log
            elif queue > self._beta * log:
                new = limit - log
            else:
                return limit
        return limit + (new - limit) * self._smoothing

    def __repr__(self) -> str:
        return f"VegasLimit(limit={self.limit}, baseline={self.baseline:.4g})"


class Gradient2Limit(_Windowed):
    """Netflix's Gradient2 idea: per window, ``gradient = rtt_tolerance * baseline / rtt``
    clamped to [0.5, 1] (1: no queueing beyond the tolerance; never more than halve), a
    share of drops lowers it further, and the limit moves ``smoothing`` of the way to
    ``limit * gradient + queue_size`` (no ``queue_size`` in a window with drops). It
    settles where latency is about ``rtt_tolerance`` times the baseline.

    Starting out it grows by half per window (slow start) until a window's mean latency
    is a tenth above the baseline, so it reaches the knee in a few windows.
    """

    __slots__ = ("_queue_size", "_slow_start", "_smoothing", "_tolerance")

    def __init__(
        self,
        *,
        initial: int = 20,
        min_limit: int = 1,
        max_limit: int = 1000,
        smoothing: float = 0.2,
        rtt_tolerance: float = 1.5,
        long_window: int = 600,
        queue_size: int = 4,
        window: float = 1.0,
        min_samples: int = 10,
    ) -> None:
        super().__init__(initial, min_limit, max_limit, window, min_samples, long_window)
        self._smoothing = _check_fraction(smoothing, "smoothing")
        self._tolerance = check_positive(rtt_tolerance, "rtt_tolerance")
        if self._tolerance < 1:
            raise ConfigError(f"rtt_tolerance must be >= 1, got {rtt_tolerance!r}")
        self._queue_size = check_count(queue_size, "queue_size", minimum=0)
        self._slow_start = True

    def _adjust(self, win: _Window) -> float:
        limit = self._limit
        mean = win.mean_rtt()
        if mean is None:
            gradient = 0.5
        else:
            base = self._baseline.observe(mean)
            if win.max_inflight * 2 < limit:
                return limit  # app limited: the caller, not the upstream, sets the pace
            gradient = max(0.5, min(1.0, self._tolerance * base / mean))
            if self._slow_start and not win.dropped and mean <= 1.1 * base:
                return limit * 1.5
        self._slow_start = False
        gradient = max(0.5, min(gradient, 1 - win.dropped / win.count))
        # the allowance for a small queue only while the upstream answers every call
        target = limit * gradient + (0 if win.dropped else self._queue_size)
        return limit + (target - limit) * self._smoothing

    def __repr__(self) -> str:
        return f"Gradient2Limit(limit={self.limit}, baseline={self.baseline:.4g})"


def algorithm_from_name(name: str, *, initial: int = 20, max_limit: int = 1000) -> LimitAlgorithm:
    """The algorithm called ``name`` (``fixed``, ``aimd``, ``vegas``, ``gradient2``) with
    its defaults; ``fixed`` holds ``initial``."""
    if name == "fixed":
        if isinstance(initial, int) and not isinstance(initial, bool) and initial > max_limit:
            raise ConfigError(f"initial must be <= max_limit, got {initial!r} > {max_limit!r}")
        return FixedLimit(initial)
    if name == "aimd":
        return AIMDLimit(initial=initial, max_limit=max_limit)
    if name == "vegas":
        return VegasLimit(initial=initial, max_limit=max_limit)
    if name == "gradient2":
        return Gradient2Limit(initial=initial, max_limit=max_limit)
    raise ConfigError(
        f"unknown concurrency algorithm {name!r}; expected one of 'fixed', 'aimd', "
        "'vegas', 'gradient2'"
    )
