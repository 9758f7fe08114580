"""Health of a tier's backend: a fault has the tier bypassed for a growing backoff.

A plain state machine fed a clock. After a fault the tier answers every call as a
miss (reads) or a no-op (writes) without touching the backend until the backoff
has passed; then one call probes the backend. A success makes the tier healthy
again; another fault doubles the backoff, up to ``max_backoff``.
"""

from __future__ import annotations

import logging

from hotpath._clock import Clock
from hotpath._errors import ConfigError
from hotpath.cache._validate import check_positive

__all__ = ["Health"]

log = logging.getLogger("hotpath.cache")


class Health:
    __slots__ = ("_backoff", "_clock", "_retry_at", "base_backoff", "faults", "max_backoff", "name")

    def __init__(
        self, name: str, clock: Clock, *, base_backoff: float = 0.5, max_backoff: float = 30.0
    ) -> None:
        self.name = name
        self._clock = clock
        self.base_backoff = check_positive(base_backoff, "base_backoff")
        self.max_backoff = check_positive(max_backoff, "max_backoff")
        if self.max_backoff < self.base_backoff:
            raise ConfigError(
                f"max_backoff must be >= base_backoff ({base_backoff!r}), got {max_backoff!r}"
            )
        self._backoff = 0.0
        self._retry_at = 0.0
        self.faults = 0

    @property
    def healthy(self) -> bool:
        return self._backoff == 0.0

    @property
    def retry_in(self) -> float:
        """Seconds until the next probe of an unhealthy backend (0 when healthy)."""
        return max(0.0, self._retry_at - self._clock.monotonic()) if self._backoff else 0.0

    def ready(self) -> bool:
        """True if the backend may be called now (healthy, or its backoff has passed)."""
        return self._backoff == 0.0 or self._clock.monotonic() >= self._retry_at

    def ok(self) -> None:
        """Record a successful call."""
        if self._backoff:
            log.warning("cache tier %s is healthy again", self.name)
            self._backoff = 0.0

    def fail(self, exc: BaseException, op: str) -> None:
        """Record a backend fault during ``op``; bypass the backend for the backoff."""
        self.faults += 1
        first = self._backoff == 0.0
        self._backoff = self.base_backoff if first else min(self.max_backoff, self._backoff * 2)
        self._retry_at = self._clock.monotonic() + self._backoff
        level = logging.WARNING if first else logging.DEBUG
        log.log(
            level,
            "cache tier %s failed during %s (%s: %s); bypassing it for %.1fs",
            self.name,
            op,
            type(exc).__name__,
            exc,
            self._backoff,
        )
