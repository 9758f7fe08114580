"""Injectable clocks.

Policies that depend on time (TTL expiry, early refresh, backoff of an unhealthy
tier) read time through a :class:`Clock`, so tests drive a :class:`ManualClock`
instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """A source of time."""

    def now(self) -> float:
        """Wall-clock time in seconds since the epoch (used for expiry, shared across hosts)."""
        ...

    def monotonic(self) -> float:
        """Monotonic seconds (used for durations and backoff)."""
        ...


class SystemClock:
    """The real clock."""

    __slots__ = ()

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that only moves when told to; for tests and simulations."""

    __slots__ = ("_mono", "_now")

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._mono = 0.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds`` (must not be negative)."""
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        self._now += seconds
        self._mono += seconds

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now!r})"
