"""Circuit breakers with resilience4j's semantics, as a plain state machine.

::

    closed ──(failure or slow-call rate >= threshold, over >= min_calls calls)──> open
    open ──(wait seconds passed; noticed lazily, by clock.monotonic)──> half_open
    half_open ──(half_open_calls trials finished, both rates below threshold)──> closed
    half_open ──(half_open_calls trials finished, either rate at/above threshold)──> open

*Closed*: every call passes; each outcome goes into a count-based sliding window
(the last ``window`` outcomes, a ring buffer with running counts, so recording is
O(1)). Once the window holds ``min_calls`` outcomes, the breaker opens as soon as
``failures / calls >= failure_rate`` or ``slow / calls >= slow_call_rate``. A
call is slow when it took ``slow_call_duration`` seconds or more, whether it
succeeded or failed (so a failed slow call counts in both rates).

*Open*: every call is refused (:meth:`CircuitBreaker.try_acquire` answers False,
:meth:`CircuitBreaker.check` raises :class:`~hotpath.CircuitOpenError`) for
``wait`` seconds.

*Half-open*: the window is reset and ``half_open_calls`` trial calls are let
through; more are refused until every trial has finished. A trial that counts
neither way (cancelled, a client error) is released (:meth:`~CircuitBreaker.release`)
and its permit goes to another call. When all trials have finished, the rates over
them decide: both below their thresholds -> closed with a fresh window; else open
again for ``wait``. There is no minimum number of calls in half-open: the trials
are the sample.

A breaker belongs to one thread (the gateway's event loop): it takes no lock, so
the closed state costs a few attribute reads per call.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias

from hotpath._clock import Clock, SystemClock
from hotpath._errors import CircuitOpenError, ConfigError, short_repr
from hotpath._options import check_count, check_positive, check_text

__all__ = ["BreakerConfig", "BreakerListener", "BreakerState", "BreakerStats", "CircuitBreaker"]

log = logging.getLogger("hotpath.traffic")

BreakerState: TypeAlias = Literal["closed", "open", "half_open"]
#: Called as ``fn(name, old_state, new_state)`` on every transition.
BreakerListener: TypeAlias = Callable[[str, BreakerState, BreakerState], None]
# Told of local transitions only (not forced ones): the Redis sync's hook.
_SyncHook: TypeAlias = Callable[["CircuitBreaker", BreakerState, BreakerState], None]

_CLOSED: BreakerState = "closed"
_OPEN: BreakerState = "open"
_HALF_OPEN: BreakerState = "half_open"
_STATES = (_CLOSED, _OPEN, _HALF_OPEN)

# An outcome in the ring buffer: two bits.
_FAILED = 1
_SLOW = 2


@dataclass(frozen=True, kw_only=True, slots=True)
class BreakerConfig:
    """How a :class:`CircuitBreaker` judges an upstream (defaults in brackets).

    ``window`` [100]: the number of latest call outcomes the closed state weighs.
    ``min_calls`` [20]: no rate is computed before the window holds this many
    (at most ``window``). ``failure_rate`` [0.5] and ``slow_call_rate`` [1.0]:
    fractions in (0, 1]; the breaker opens when either rate reaches its threshold.
    ``slow_call_duration`` [60.0]: seconds from which a call is slow. ``wait``
    [30.0]: seconds open before half-open. ``half_open_calls`` [3]: trial calls in
    half-open.
    """

    window: int = 100
    min_calls: int = 20
    failure_rate: float = 0.5
    slow_call_rate: float = 1.0
    slow_call_duration: float = 60.0
    wait: float = 30.0
    half_open_calls: int = 3

    def __post_init__(self) -> None:
        window = check_count(self.window, "BreakerConfig.window")
        min_calls = check_count(self.min_calls, "BreakerConfig.min_calls")
        if min_calls > window:
            raise ConfigError(
                f"BreakerConfig.min_calls must be <= window ({window}), got {min_calls!r}"
            )
        check_count(self.half_open_calls, "BreakerConfig.half_open_calls")
        for field in ("failure_rate", "slow_call_rate"):
            value = getattr(self, field)
            rate = check_positive(value, f"BreakerConfig.{field}")
            if rate > 1.0:
                raise ConfigError(
                    f"BreakerConfig.{field} must be a fraction in (0, 1], got {short_repr(value)}"
                )
            object.__setattr__(self, field, rate)
        for field in ("slow_call_duration", "wait"):
            seconds = check_positive(getattr(self, field), f"BreakerConfig.{field}")
            object.__setattr__(self, field, seconds)


@dataclass(frozen=True, kw_only=True, slots=True)
class BreakerStats:
    """A snapshot of a :class:`CircuitBreaker`.

    ``calls``, ``failures`` and ``slow`` count the outcomes in the sliding window
    (in half-open: the trials finished so far; when open: those that opened it,
    the window's or the trials'); the rates are over those calls
    (0.0 when there are none, and they decide nothing below ``min_calls``).
    ``opened`` counts entries into the open state (remote ones included),
    ``rejected`` the calls refused; ``retry_after`` is seconds until half-open (0
    unless open).
    """

    name: str
    state: BreakerState
    calls: int
    failures: int
    slow: int
    failure_rate: float
    slow_call_rate: float
    opened: int
    rejected: int
    retry_after: float


def _trip_table(rate: float, window: int, min_calls: int) -> list[int]:
    """``table[n]``: the fewest bad outcomes out of ``n`` calls with ``bad / n >= rate``.

    Computed with the very division the rule states (so 3 of 10 trips a rate of 0.3,
    where ``3 >= 0.3 * 10`` would not), once, so recording never divides. Below
    ``min_calls`` the entry is unreachable.
    """
    table = [window + 1] * (window + 1)
    for n in range(min_calls, window + 1):
        bad = max(1, math.ceil(rate * n))
        while bad > 1 and (bad - 1) / n >= rate:
            bad -= 1
        while bad / n < rate:
            bad += 1
        table[n] = bad
    return table


class CircuitBreaker:
    """The circuit breaker of one upstream deployment (see the module docstring).

    Per call: :meth:`try_acquire` (or :meth:`check`), then exactly one of
    :meth:`record_success`, :meth:`record_failure` (with the call's duration in
    seconds) or :meth:`release` (the call counts neither way).
    """

    __slots__ = (
        "_calls",
        "_clock",
        "_fail_trip",
        "_failures",
        "_listeners",
        "_open_until",
        "_opened",
        "_pos",
        "_rejected",
        "_ring",
        "_slow",
        "_slow_at",
        "_slow_trip",
        "_state",
        "_sync",
        "_trial_failures",
        "_trial_slow",
        "_trials_done",
        "_trials_taken",
        "_window",
        "config",
        "name",
    )

    def __init__(
        self, name: str, config: BreakerConfig | None = None, *, clock: Clock | None = None
    ) -> None:
        self.name = check_text(name, "name")
        if config is None:
            config = BreakerConfig()
        elif not isinstance(config, BreakerConfig):
            raise ConfigError(
                f"config must be a BreakerConfig, got {type(config).__name__} {short_repr(config)}"
            )
        self.config = config
        self._clock: Clock = clock or SystemClock()
        self._window = config.window
        self._slow_at = config.slow_call_duration
        self._fail_trip = _trip_table(config.failure_rate, config.window, config.min_calls)
        self._slow_trip = _trip_table(config.slow_call_rate, config.window, config.min_calls)
        self._ring = bytearray(config.window)
        self._pos = self._calls = self._failures = self._slow = 0
        self._state: BreakerState = _CLOSED
        self._open_until = 0.0  # clock.monotonic() at which open turns half-open
        self._trials_taken = self._trials_done = self._trial_failures = self._trial_slow = 0
        self._opened = self._rejected = 0
        self._listeners: list[BreakerListener] = []
        self._sync: _SyncHook | None = None

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self.state!r})"

    # -- the hot path ---------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state; open turns half-open here once ``wait`` has passed."""
        if self._state is _OPEN and self._clock.monotonic() >= self._open_until:
            self._move(_HALF_OPEN)
        return self._state

    def try_acquire(self) -> bool:
        """May a call go now? Closed: yes. Open: no. Half-open: while trials remain."""
        if self._state is _CLOSED:
            return True
        if self.state is _HALF_OPEN and self._trials_taken < self.config.half_open_calls:
            self._trials_taken += 1
            return True
        self._rejected += 1
        return False

    def check(self) -> None:
        """:meth:`try_acquire`, raising :class:`~hotpath.CircuitOpenError` on a refusal.

        Its ``retry_after`` is the seconds until half-open, or ``None`` when the
        breaker is half-open with every trial permit taken (it depends on them).
        """
        if self._state is _CLOSED or self.try_acquire():
            return
        retry_after = self.retry_after if self._state is _OPEN else None
        when = f"retry in {retry_after:.3g} s" if retry_after is not None else "trial calls running"
        raise CircuitOpenError(
            f"circuit breaker {self.name!r} is {self._state.replace('_', '-')} ({when})",
            name=self.name,
            retry_after=retry_after,
        )

    def record_success(self, duration: float) -> None:
        """A call succeeded after ``duration`` seconds (slow from ``slow_call_duration``)."""
        outcome = _SLOW if duration >= self._slow_at else 0
        if self._state is not _CLOSED:
            self._trial(outcome)
        elif outcome or self._calls != self._window:
            self._push(outcome)
        else:
            # The common case, inlined: a quick success in a full window replaces the
            # oldest outcome. It lowers or keeps both rates, so it cannot open.
            pos = self._pos
            ring = self._ring
            old = ring[pos]
            if old:
                ring[pos] = 0
                if old & _FAILED:
                    self._failures -= 1
                if old & _SLOW:
                    self._slow -= 1
            pos += 1
            self._pos = 0 if pos == self._window else pos

    def record_failure(self, duration: float) -> None:
        """A call failed after ``duration`` seconds (an upstream fault, not the client's)."""
        outcome = _FAILED | _SLOW if duration >= self._slow_at else _FAILED
        if self._state is _CLOSED:
            self._push(outcome)
        else:
            self._trial(outcome)

    def release(self) -> None:
        """A call that counts neither way (cancelled, a client error) ended.

        In half-open its trial permit goes back, for another call; otherwise a no-op.
        """
        if self._state is _HALF_OPEN and self._trials_taken > self._trials_done:
            self._trials_taken -= 1

    def _push(self, outcome: int) -> None:
        """Add an outcome to the closed state's window; open if a rate is reached."""
        ring, pos = self._ring, self._pos
        calls = self._calls
        if calls == self._window:  # full: the oldest outcome leaves
            old = ring[pos]
            if old:
                if old & _FAILED:
                    self._failures -= 1
                if old & _SLOW:
                    self._slow -= 1
        else:
            calls = self._calls = calls + 1
        ring[pos] = outcome
        pos += 1
        self._pos = 0 if pos == self._window else pos
        if outcome:
            if outcome & _FAILED:
                self._failures += 1
            if outcome & _SLOW:
                self._slow += 1
        if self._failures >= self._fail_trip[calls] or self._slow >= self._slow_trip[calls]:
            self._move(_OPEN)

    def _trial(self, outcome: int) -> None:
        """Count a half-open trial's outcome; decide once all trials have finished.

        Outcomes arriving while open, or in half-open beyond the permits handed out
        (calls let through before the breaker opened), are dropped.
        """
        if self.state is not _HALF_OPEN or self._trials_done >= self._trials_taken:
            return
        self._trials_done += 1
        if outcome & _FAILED:
            self._trial_failures += 1
        if outcome & _SLOW:
            self._trial_slow += 1
        done = self._trials_done
        if done < self.config.half_open_calls:
            return
        cfg = self.config
        bad = (
            self._trial_failures / done >= cfg.failure_rate
            or self._trial_slow / done >= cfg.slow_call_rate
        )
        self._move(_OPEN if bad else _CLOSED)

    # -- transitions ------------------------------------------------------------------

    def _move(self, new: BreakerState, *, until: float | None = None, local: bool = True) -> None:
        """Enter ``new`` (open until monotonic ``until``, default ``wait`` from now)."""
        old = self._state
        if new is _OPEN:
            # The counts that decided stay for stats(): the window's, or the trials'.
            now = self._clock.monotonic()
            self._open_until = now + self.config.wait if until is None else until
            self._opened += 1
        else:  # closed and half-open both start from nothing
            self._pos = self._calls = self._failures = self._slow = 0
            self._trials_taken = self._trials_done = self._trial_failures = self._trial_slow = 0
        self._state = new
        for fn in self._listeners:
            try:
                fn(self.name, old, new)
            except Exception:
                log.exception("circuit breaker %r: listener %r failed", self.name, fn)
        if local and self._sync is not None:
            self._sync(self, old, new)

    def force_state(self, state: BreakerState, *, until: float | None = None) -> None:
        """Apply a transition decided elsewhere (another replica, an operator).

        ``"open"`` lasts until the wall time ``until`` (``clock.now()`` seconds; None:
        ``wait`` from now), converted to this host's monotonic clock; if already open
        only the end moves. ``"closed"`` starts a fresh window; ``"half_open"`` fresh
        trials; both are no-ops in that state already. Listeners see the transition;
        the Redis sync does not (it is not a local decision to share).
        """
        if state not in _STATES:
            raise ConfigError(
                f"state must be one of {', '.join(map(repr, _STATES))}, got {short_repr(state)}"
            )
        end: float | None = None
        if until is not None:
            if isinstance(until, bool) or not isinstance(until, int | float):
                raise ConfigError(f"until must be a wall time in seconds, got {short_repr(until)}")
            if state != _OPEN:
                raise ConfigError(f"until only applies to 'open', got state {state!r}")
            end = self._clock.monotonic() + (float(until) - self._clock.now())
        if state == _OPEN:
            if self._state is _OPEN:
                self._open_until = end if end is not None else self._open_until
                return
            self._move(_OPEN, until=end, local=False)
        elif self._state != state:
            self._move(_CLOSED if state == _CLOSED else _HALF_OPEN, local=False)

    # -- observing --------------------------------------------------------------------

    @property
    def retry_after(self) -> float:
        """Seconds until half-open while open; 0 otherwise."""
        if self.state is not _OPEN:
            return 0.0
        return max(0.0, self._open_until - self._clock.monotonic())

    def _open_until_wall(self) -> float | None:
        """The wall time (``clock.now()``) at which open turns half-open; None unless open."""
        if self.state is not _OPEN:
            return None
        return self._clock.now() + (self._open_until - self._clock.monotonic())

    def add_listener(self, fn: BreakerListener) -> None:
        """Call ``fn(name, old, new)`` on every transition, local or forced.

        It runs inside the call that caused the transition: keep it quick. An
        exception it raises is logged, never raised to the caller.
        """
        if not callable(fn):
            raise ConfigError(f"listener must be callable, got {short_repr(fn)}")
        self._listeners.append(fn)

    def stats(self) -> BreakerStats:
        """A snapshot of the state and counters (see :class:`BreakerStats`)."""
        state = self.state
        if state is _CLOSED or (state is _OPEN and self._calls):
            calls, failures, slow = self._calls, self._failures, self._slow
        else:
            calls, failures, slow = self._trials_done, self._trial_failures, self._trial_slow
        return BreakerStats(
            name=self.name,
            state=state,
            calls=calls,
            failures=failures,
            slow=slow,
            failure_rate=failures / calls if calls else 0.0,
            slow_call_rate=slow / calls if calls else 0.0,
            opened=self._opened,
            rejected=self._rejected,
            retry_after=self.retry_after,
        )
