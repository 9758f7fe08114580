"""Retries with capped exponential backoff and full jitter.

Only failures that a second try can fix are retried: the upstream could not be
reached, it timed out or cut a stream before any byte reached the client, or it
answered 408 / 409 / 425 / 429 / 5xx / 529. A retry honours the upstream's
Retry-After, and the whole sequence is bounded three ways: attempts, elapsed time
since the first try began, and (optionally) a shared :class:`RetryBudget` so that
retries cannot multiply an outage.

:class:`RetryState` is the policy as a plain state machine (the gateway drives it
from its own loop, mixed with fallbacks to other deployments); :func:`retry` and
:func:`retrying` wrap an async callable for library users.
"""

from __future__ import annotations

import asyncio
import functools
import math
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, ParamSpec, TypeVar

from hotpath._clock import Clock, SystemClock
from hotpath._errors import (
    ConfigError,
    TrafficError,
    UpstreamStatusError,
    UpstreamStreamCutError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from hotpath._options import check_count, check_non_negative
from hotpath.traffic._retry_budget import RetryBudget

__all__ = [
    "RETRYABLE_STATUSES",
    "GiveUpReason",
    "RetryPolicy",
    "RetryState",
    "is_retryable",
    "retry",
    "retry_after_of",
    "retrying",
]

T = TypeVar("T")
P = ParamSpec("P")

GiveUpReason = Literal["not_retryable", "attempts", "elapsed", "retry_after", "budget"]

RETRYABLE_STATUSES: frozenset[int] = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
"""Statuses worth another try: timeouts, conflicts, too early, rate limited, server
errors and Anthropic's 529 "overloaded". 501 (not implemented) and 505 are final."""

# Beyond this many doublings every cap is max_delay anyway; stop before 2**n overflows.
_MAX_DOUBLINGS = 62


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """How often and how long to retry.

    ``attempts`` counts every try, the first included. The ``n``-th retry waits a
    uniformly random time in ``[0, min(max_delay, base_delay * 2**(n-1))]`` ("full
    jitter", so that clients failing together do not retry together), or the
    upstream's Retry-After if that is longer. No retry starts more than
    ``max_elapsed`` seconds after the first try began, and a Retry-After longer than
    ``max_retry_after`` means "give up now" rather than "wait".
    """

    attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_elapsed: float = 30.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        check_count(self.attempts, "attempts")
        check_non_negative(self.base_delay, "base_delay")
        check_non_negative(self.max_delay, "max_delay")
        check_non_negative(self.max_elapsed, "max_elapsed")
        check_non_negative(self.max_retry_after, "max_retry_after")

    def delay(
        self,
        retry: int,
        *,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 1:
            raise ConfigError(f"retry must be an int >= 1, got {retry!r}")
        if retry - 1 >= _MAX_DOUBLINGS:
            cap = self.max_delay
        else:
            cap = min(self.max_delay, self.base_delay * (1 << (retry - 1)))
        uniform = rng.uniform if rng is not None else random.uniform
        jitter = uniform(0.0, cap) if cap > 0 else 0.0
        # uniform() may round up to its upper bound; never exceed the cap.
        jitter = min(jitter, cap)
        if retry_after is not None and math.isfinite(retry_after) and retry_after > jitter:
            return float(retry_after)
        return jitter


def is_retryable(exc: BaseException, *, streamed: bool = False) -> bool:
    """Whether another try may succeed where ``exc`` failed.

    ``streamed`` says some of the answer already reached the client: a retry would
    then duplicate it, so nothing is retryable. Traffic control's own refusals
    (:class:`~hotpath.TrafficError`) are not retried here either: they carry a
    ``retry_after`` for the caller, and the gateway falls back instead.
    """
    if streamed:
        return False
    if isinstance(exc, UpstreamStatusError):
        return exc.status in RETRYABLE_STATUSES
    return isinstance(exc, UpstreamUnavailableError | UpstreamTimeoutError | UpstreamStreamCutError)


def retry_after_of(exc: BaseException) -> float | None:
    """The Retry-After (seconds) an error carries, or ``None``."""
    if isinstance(exc, UpstreamStatusError | TrafficError):
        value = exc.retry_after
        if value is not None and math.isfinite(value) and value >= 0:
            return float(value)
    return None


class RetryState:
    """The retry decisions for one call, as a state machine.

    Create it when the first try begins (it records the time and deposits into the
    budget); after each failed try, :meth:`next_delay` answers ``None`` ("give up",
    with the reason in :attr:`gave_up`) or the seconds to wait before the next try.
    ``attempts`` counts the tries started or granted so far (1 after construction);
    ``retries`` is ``attempts - 1``.
    """

    __slots__ = (
        "_budget",
        "_clock",
        "_policy",
        "_retryable",
        "_rng",
        "_start",
        "attempts",
        "gave_up",
    )

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        budget: RetryBudget | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        retryable: Callable[[BaseException], bool] | None = None,
    ) -> None:
        self._policy = policy
        self._budget = budget
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._rng = rng
        self._retryable = retryable
        self._start = self._clock.monotonic()
        self.attempts = 1
        self.gave_up: GiveUpReason | None = None
        if budget is not None:
            budget.record_request()

    @property
    def retries(self) -> int:
        return self.attempts - 1

    @property
    def policy(self) -> RetryPolicy:
        return self._policy

    def elapsed(self) -> float:
        """Seconds since the first try began."""
        return self._clock.monotonic() - self._start

    def next_delay(
        self, exc: BaseException, *, streamed: bool = False, elsewhere: bool = False
    ) -> float | None:
        """After a failed try: ``None`` to give up, else the seconds to wait before
        the next one (which then counts as started). ``elsewhere`` says the next try
        goes to another endpoint (a router's other deployment): it need not wait,
        neither for the failed one's Retry-After nor a backoff."""
        policy = self._policy
        if self._retryable is None:
            retryable = is_retryable(exc, streamed=streamed)
        else:
            retryable = not streamed and self._retryable(exc)
        if not retryable:
            return self._give_up("not_retryable")
        if self.attempts >= policy.attempts:
            return self._give_up("attempts")
        if elsewhere:
            delay = 0.0
        else:
            retry_after = retry_after_of(exc)
            if retry_after is not None and retry_after > policy.max_retry_after:
                return self._give_up("retry_after")
            delay = policy.delay(self.attempts, retry_after=retry_after, rng=self._rng)
        if self.elapsed() + delay > policy.max_elapsed:
            return self._give_up("elapsed")
        # The budget comes last: it is spent only on a retry that will be taken.
        if self._budget is not None and not self._budget.try_spend():
            return self._give_up("budget")
        self.attempts += 1
        return delay

    def _give_up(self, reason: GiveUpReason) -> float | None:
        self.gave_up = reason
        return None

    def __repr__(self) -> str:
        return f"RetryState(attempts={self.attempts!r}, gave_up={self.gave_up!r})"


async def retry(
    fn: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy | None = None,
    budget: RetryBudget | None = None,
    retryable: Callable[[BaseException], bool] = is_retryable,
    clock: Clock | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
) -> T:
    """Await ``fn()`` until it succeeds or the policy gives up; then raise the last
    error. Only :class:`Exception` subclasses are considered (cancellation passes
    straight through)."""
    state = RetryState(
        policy if policy is not None else RetryPolicy(),
        budget=budget,
        clock=clock,
        rng=rng,
        retryable=retryable,
    )
    while True:
        try:
            return await fn()
        except Exception as exc:
            delay = state.next_delay(exc)
            if delay is None:
                raise
        await sleep(delay)


def retrying(
    policy: RetryPolicy | None = None,
    *,
    budget: RetryBudget | None = None,
    retryable: Callable[[BaseException], bool] = is_retryable,
    clock: Clock | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Coroutine[Any, Any, T]]]:
    """Decorate an async function so that each call goes through :func:`retry`."""

    def decorate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return await retry(
                lambda: fn(*args, **kwargs),
                policy=policy,
                budget=budget,
                retryable=retryable,
                clock=clock,
                sleep=sleep,
                rng=rng,
            )

        return wrapper

    return decorate
