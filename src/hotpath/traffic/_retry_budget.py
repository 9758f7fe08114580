"""A retry budget: retries may add at most a fixed share of extra load.

Bounding attempts per call is not enough: when an upstream fails every call, three
attempts per call triple its load exactly when it can least take it, and each layer
of retrying clients multiplies that again. A budget shared by all calls to one
upstream caps retries to ``ratio`` of the first tries seen in the last ``window``
seconds, plus a small floor (``min_per_second``) so a quiet client can still retry
now and then. The idea is Finagle's ``RetryBudget`` (and tower's ``TpsBudget``).

The counts live in a ring of time buckets, so recording and spending are O(1) and
no per-request history is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hotpath._clock import Clock, SystemClock
from hotpath._options import check_non_negative, check_positive

__all__ = ["RetryBudget", "RetryBudgetStats"]

_BUCKETS = 10


@dataclass(frozen=True, slots=True)
class RetryBudgetStats:
    """Counts since the budget was created, and what is left to spend now.

    ``requests``: first tries recorded; ``retries``: retries allowed; ``refused``:
    retries the budget refused; ``balance``: how many more retries it would allow
    at this moment (0.0 when spent)."""

    requests: int
    retries: int
    refused: int
    balance: float


class RetryBudget:
    """Allows retries while those in the last ``window`` seconds stay within
    ``ratio * requests + min_per_second * window`` (requests counted over the same
    window).

    Call :meth:`record_request` for every first try and :meth:`try_spend` before
    every retry; a ``False`` answer means "do not retry". Not thread-safe: share one
    budget per upstream within one event loop.
    """

    __slots__ = (
        "_clock",
        "_epoch",
        "_min_per_second",
        "_ratio",
        "_refused",
        "_requests",
        "_reserve",
        "_retries",
        "_ring_requests",
        "_ring_retries",
        "_total_requests",
        "_total_retries",
        "_width",
        "_window",
    )

    def __init__(
        self,
        *,
        ratio: float = 0.1,
        min_per_second: float = 1.0,
        window: float = 10.0,
        clock: Clock | None = None,
    ) -> None:
        self._ratio = check_non_negative(ratio, "ratio")
        self._min_per_second = check_non_negative(min_per_second, "min_per_second")
        self._window = check_positive(window, "window")
        self._reserve = self._min_per_second * self._window
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._width = self._window / _BUCKETS
        self._ring_requests = [0] * _BUCKETS
        self._ring_retries = [0] * _BUCKETS
        self._requests = 0  # in the window (the sum of the ring)
        self._retries = 0
        self._epoch = math.floor(self._clock.monotonic() / self._width)
        self._total_requests = 0
        self._total_retries = 0
        self._refused = 0

    @property
    def ratio(self) -> float:
        return self._ratio

    @property
    def min_per_second(self) -> float:
        return self._min_per_second

    @property
    def window(self) -> float:
        return self._window

    def record_request(self) -> None:
        """Count a first try (it deposits ``ratio`` of a retry)."""
        slot = self._advance()
        self._ring_requests[slot] += 1
        self._requests += 1
        self._total_requests += 1

    def try_spend(self) -> bool:
        """Withdraw one retry; ``False`` (and nothing withdrawn) when the budget is spent."""
        slot = self._advance()
        # The small tolerance keeps float rounding of ratio * requests from refusing
        # the last retry a whole number allows.
        if self._retries + 1 > self._ratio * self._requests + self._reserve + 1e-9:
            self._refused += 1
            return False
        self._ring_retries[slot] += 1
        self._retries += 1
        self._total_retries += 1
        return True

    def stats(self) -> RetryBudgetStats:
        self._advance()
        balance = self._ratio * self._requests + self._reserve - self._retries
        return RetryBudgetStats(
            requests=self._total_requests,
            retries=self._total_retries,
            refused=self._refused,
            balance=max(0.0, balance),
        )

    def _advance(self) -> int:
        """Drop the buckets that left the window; return the current bucket's slot."""
        epoch = math.floor(self._clock.monotonic() / self._width)
        gone = epoch - self._epoch
        if gone > 0:
            if gone >= _BUCKETS:
                self._ring_requests = [0] * _BUCKETS
                self._ring_retries = [0] * _BUCKETS
                self._requests = 0
                self._retries = 0
            else:
                for step in range(1, gone + 1):
                    slot = (self._epoch + step) % _BUCKETS
                    self._requests -= self._ring_requests[slot]
                    self._retries -= self._ring_retries[slot]
                    self._ring_requests[slot] = 0
                    self._ring_retries[slot] = 0
            self._epoch = epoch
        return self._epoch % _BUCKETS

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self._ratio!r}, min_per_second={self._min_per_second!r}, "
            f"window={self._window!r})"
        )
