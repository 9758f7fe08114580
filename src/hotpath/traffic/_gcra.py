"""Rate limits by GCRA (the generic cell rate algorithm), and the in-process limiter.

A counter is one float per key, its *theoretical arrival time* (TAT): the moment
the counter would be idle again if nothing more came. A rate of ``limit`` units
per ``period`` spends ``interval = period / limit`` seconds of TAT per unit; a call
of ``cost`` units at time ``now`` is admitted when the TAT it would leave is at
most ``capacity * interval`` seconds ahead of ``now``::

    tat  = max(stored, now)            # an idle counter starts from now
    new  = tat + cost * interval
    wait = new - capacity * interval - now   # <= 0: admit now; > 0: that long from now

So ``capacity`` units pass at once from idle, then one unit per ``interval``.
Nothing is counted per window and nothing is rounded to a tick, so there is no
drift: after ``k`` periods of steady demand exactly ``limit * k + capacity`` units
have passed. Window guarantee: in *any* window of ``period`` seconds at most
``limit + capacity`` units are admitted (a call queued through ``max_wait`` counts
at the moment it may proceed). Proof sketch: each admission leaves
``TAT <= t + capacity * interval`` and every unit admitted inside the window
``[s, s + period]`` pushed the TAT up by ``interval`` from at least ``s``.

:func:`judge` is the decision over several limits, all or nothing, as a pure
function of the counters' TATs; :class:`LocalRateLimiter` feeds it a dict and
``RedisRateLimiter`` runs the same arithmetic in Lua next to the counters.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from hotpath._clock import Clock, SystemClock
from hotpath._errors import ConfigError, short_repr
from hotpath._options import check_count, check_non_negative, check_text

__all__ = [
    "EPSILON",
    "Decision",
    "Limit",
    "LocalRateLimiter",
    "Rate",
    "RateLimiterStats",
    "bad_limit",
    "check_finite",
    "check_limits",
    "judge",
]

# Slack, in seconds, on every "is it time yet" comparison: a call that lands exactly
# on its slot must not be refused because float sums of intervals rounded the other
# way (at epoch times, as Redis stores them, one ulp is ~0.2 us).
EPSILON = 1e-6
_INF = math.inf


@dataclass(frozen=True, kw_only=True, slots=True)
class Rate:
    """``limit`` units (requests, tokens ...) per ``period`` seconds.

    ``burst`` is how many units may go at once from idle (``None``: ``limit``).
    In any window of ``period`` seconds at most ``limit + capacity`` units are
    admitted, whatever the timing of the calls.
    """

    limit: float
    period: float = 60.0
    burst: float | None = None
    interval: float = field(init=False, repr=False, compare=False)
    """Seconds of the counter one unit spends: ``period / limit``."""
    capacity: float = field(init=False, repr=False, compare=False)
    """Units that may go at once from idle: ``burst``, or ``limit`` when it is None."""
    tolerance: float = field(init=False, repr=False, compare=False)
    """How far ahead of now a counter may run, in seconds: ``capacity * interval``."""

    def __post_init__(self) -> None:
        limit = _positive(self.limit, "Rate.limit")
        period = _positive(self.period, "Rate.period")
        object.__setattr__(self, "limit", limit)
        object.__setattr__(self, "period", period)
        capacity = limit
        if self.burst is not None:
            capacity = _positive(self.burst, "Rate.burst")
            object.__setattr__(self, "burst", capacity)
        interval = period / limit
        if not interval > 0.0:
            raise ConfigError(f"Rate.period / Rate.limit must be > 0, got {period!r} / {limit!r}")
        object.__setattr__(self, "interval", interval)
        object.__setattr__(self, "capacity", capacity)
        object.__setattr__(self, "tolerance", capacity * interval)


def _positive(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{name} must be a number > 0, got {short_repr(value)}")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number > 0, got {short_repr(value)}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Limit:
    """One counter a call is charged to: ``cost`` units of ``rate`` on ``key``.

    ``key`` names the counter (e.g. ``"tenant:acme:rpm"``); a cost of 0 only checks.
    """

    key: str
    rate: Rate
    cost: float = 1.0

    def __post_init__(self) -> None:
        check_text(self.key, "Limit.key")
        if not isinstance(self.rate, Rate):
            raise ConfigError(
                f"Limit.rate must be a Rate, got {type(self.rate).__name__} {short_repr(self.rate)}"
            )
        object.__setattr__(self, "cost", check_non_negative(self.cost, "Limit.cost"))


class Decision(NamedTuple):
    """The answer to one acquire over one or more limits (a named tuple: one is
    built per decision, on the hot path, and a frozen dataclass costs 4x more).

    ``allowed``: the call was admitted and charged to every limit.
    ``wait``: when allowed, seconds to wait before proceeding (> 0 only when the
    call was queued through ``max_wait``; its slot is already reserved).
    ``retry_after``: when refused, seconds until the same call would be admitted
    without waiting (``math.inf`` when its cost exceeds a limit's capacity).
    ``limit``: when refused, the key of the limit with the longest ``retry_after``.
    ``remaining`` / ``reset_after``: units left now, and seconds until full again,
    of the tightest limit (allowed: the one with the smallest share of its capacity
    left after the charge; refused: the refusing limit). ``remaining`` is
    ``math.inf`` when nothing is known (no limits; Redis unavailable).
    """

    allowed: bool
    wait: float
    retry_after: float
    limit: str | None
    remaining: float
    reset_after: float


@dataclass(frozen=True, slots=True)
class RateLimiterStats:
    """Counters of a rate limiter since it was built.

    ``allowed`` and ``refused`` include the decisions taken without the backend
    (``failed_open`` / ``failed_closed``); ``queued`` counts admissions with a
    ``wait``; ``errors`` counts backend faults; ``healthy`` is False while the
    backend is being left alone after a fault.
    """

    decisions: int
    allowed: int
    refused: int
    queued: int
    errors: int
    failed_open: int
    failed_closed: int
    healthy: bool


def check_limits(limits: object) -> Sequence[Limit]:
    """``limits`` as a list or tuple of :class:`Limit` (the slow path of the check)."""
    if isinstance(limits, Limit | str | bytes) or not isinstance(limits, Iterable):
        raise ConfigError(f"limits must be a sequence of Limit, got {short_repr(limits)}")
    out = tuple(limits)
    for i, lim in enumerate(out):
        if type(lim) is not Limit:
            raise ConfigError(f"limits[{i}] must be a Limit, got {short_repr(lim)}")
    return out


def bad_limit(limits: Sequence[object]) -> ConfigError:
    """The error for the first element of ``limits`` that is not a :class:`Limit`."""
    for i, lim in enumerate(limits):
        if type(lim) is not Limit:
            return ConfigError(f"limits[{i}] must be a Limit, got {short_repr(lim)}")
    return ConfigError(f"limits must be a sequence of Limit, got {short_repr(limits)}")


def judge(limits: Sequence[Limit], tats: Sequence[float], now: float, max_wait: float) -> Decision:
    """The decision over ``limits`` whose counters stand at ``tats`` (each already
    ``max(stored, now)``), all or nothing. If allowed, counter ``i`` moves to
    ``tats[i] + cost * interval``.

    The Lua script of the Redis limiter repeats this arithmetic operation for
    operation, so both sides agree to the last bit on whether a call passes.
    """
    need = -_INF
    worst = -1
    best = _INF
    left = reset = 0.0
    for i, lim in enumerate(limits):
        rate = lim.rate
        cost = lim.cost
        interval = rate.interval
        capacity = rate.capacity
        ahead = tats[i] + cost * interval - now
        w = ahead - rate.tolerance if cost <= capacity else _INF
        if w > need:
            need = w
            worst = i
        units = capacity - ahead / interval
        if units < best * capacity:  # the smallest share of its capacity left
            best = units / capacity
            left = units
            reset = ahead
    if need > max_wait + EPSILON:
        rate = limits[worst].rate
        ahead = tats[worst] - now
        left = rate.capacity - ahead / rate.interval
        return Decision(False, 0.0, need, limits[worst].key, _units(left), ahead)
    if worst < 0:
        return Decision(True, 0.0, 0.0, None, _INF, 0.0)
    return Decision(True, need if need > EPSILON else 0.0, 0.0, None, _units(left), reset)


def _units(left: float) -> float:
    """Units left, as shown to callers: never negative, float noise rounded off
    (so that a header shows 2, not 1.9999997)."""
    return round(left, 3) if left > 0.0 else 0.0


class LocalRateLimiter:
    """GCRA rate limits kept in this process: a dict of key -> TAT on ``clock``'s
    monotonic time. Thread-safe; one decision over three limits takes a few us.

    At most ``max_keys`` counters are kept: when full, counters already idle are
    dropped first (forgetting them changes nothing), then the oldest.
    """

    __slots__ = (
        "_allowed",
        "_clock",
        "_decisions",
        "_lock",
        "_max_keys",
        "_queued",
        "_refused",
        "_tats",
    )

    def __init__(self, *, clock: Clock | None = None, max_keys: int = 100_000) -> None:
        self._clock: Clock = clock or SystemClock()
        self._max_keys = check_count(max_keys, "max_keys")
        self._tats: dict[str, float] = {}
        self._lock = threading.Lock()
        self._decisions = self._allowed = self._refused = self._queued = 0

    def __repr__(self) -> str:
        return f"LocalRateLimiter(clock={self._clock!r}, max_keys={self._max_keys!r})"

    def __len__(self) -> int:
        """Counters held (idle ones included until they are swept)."""
        return len(self._tats)

    def decide(self, limits: Sequence[Limit], *, max_wait: float = 0.0) -> Decision:
        """Admit and charge a call on every limit in ``limits``, or on none.

        With ``max_wait`` > 0 a call that fits within that many seconds on every
        limit is admitted now with its slot reserved, and ``Decision.wait`` says
        how long to sleep before proceeding.
        """
        if max_wait != 0.0:  # the common call skips the check (NaN is != 0.0)
            max_wait = check_non_negative(max_wait, "max_wait")
        if type(limits) is not list and type(limits) is not tuple:
            limits = check_limits(limits)
        with self._lock:
            now = self._clock.monotonic()
            get = self._tats.get
            tats = []
            for lim in limits:
                if type(lim) is not Limit:
                    raise bad_limit(limits)
                tat = get(lim.key)
                tats.append(tat if tat is not None and tat > now else now)
            decision = judge(limits, tats, now, max_wait)
            self._decisions += 1
            if decision.allowed:
                self._allowed += 1
                if decision.wait:
                    self._queued += 1
                store = self._tats
                for i, lim in enumerate(limits):
                    if lim.cost:
                        key = lim.key
                        if key not in store and len(store) >= self._max_keys:
                            self._evict(now)
                        store[key] = tats[i] + lim.cost * lim.rate.interval
            else:
                self._refused += 1
        return decision

    async def acquire(self, limits: Sequence[Limit], *, max_wait: float = 0.0) -> Decision:
        """:meth:`decide`, for the interface every rate limiter shares."""
        return self.decide(limits, max_wait=max_wait)

    def adjust(self, key: str, rate: Rate, delta: float) -> None:
        """The synchronous :meth:`settle`."""
        check_text(key, "key")
        if not isinstance(rate, Rate):
            raise ConfigError(f"rate must be a Rate, got {short_repr(rate)}")
        delta = check_finite(delta, "delta")
        with self._lock:
            now = self._clock.monotonic()
            store = self._tats
            tat = store.get(key)
            if tat is None or tat < now:
                tat = now
            new = tat + delta * rate.interval
            if new <= now:
                store.pop(key, None)
                return
            if key not in store and len(store) >= self._max_keys:
                self._evict(now)
            store[key] = new

    async def settle(self, key: str, rate: Rate, delta: float) -> None:
        """Correct a charge once the true cost is known: ``delta`` > 0 takes more
        units of ``rate`` on ``key``, < 0 gives units back (never beyond idle)."""
        self.adjust(key, rate, delta)

    def _evict(self, now: float) -> None:
        """Make room for ~1/8 of ``max_keys``: idle counters first, then the oldest
        (so a full map of busy counters is swept once per max_keys/8 new keys)."""
        store = self._tats
        target = self._max_keys - max(1, self._max_keys // 8)
        for key in [k for k, tat in store.items() if tat <= now]:
            del store[key]
        if len(store) > target:
            for key in list(store)[: len(store) - target]:
                del store[key]

    @property
    def stats(self) -> RateLimiterStats:
        return RateLimiterStats(
            decisions=self._decisions,
            allowed=self._allowed,
            refused=self._refused,
            queued=self._queued,
            errors=0,
            failed_open=0,
            failed_closed=0,
            healthy=True,
        )

    async def aclose(self) -> None:
        """Nothing to release; for the interface every rate limiter shares."""


def check_finite(value: object, name: str) -> float:
    """``value`` as a finite float (any sign)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {short_repr(value)}")
    return float(value)
