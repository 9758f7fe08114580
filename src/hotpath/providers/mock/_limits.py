"""Provider limits of the mock upstream: rate limits as token buckets fed a clock,
the headers and 429 replies OpenAI and Anthropic send for them, and their
context-window errors.

Policy only: :class:`RateLimits` decides and describes, the app sends. Time comes
from a :class:`~hotpath._clock.Clock`, so tests drive a ``ManualClock``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from hotpath._clock import Clock
from hotpath.providers.mock._http import Header, Reply, anthropic_error, openai_error

__all__ = [
    "RateLimits",
    "Rejection",
    "TokenBucket",
    "anthropic_context_error",
    "anthropic_rejection",
    "format_reset",
    "openai_context_error",
    "openai_rejection",
    "retry_headers",
]


class TokenBucket:
    """A bucket of ``capacity`` units refilled continuously at ``capacity`` per
    minute, starting full. Times are monotonic seconds."""

    __slots__ = ("_level", "_stamp", "capacity", "rate")

    def __init__(self, capacity: int, now: float) -> None:
        self.capacity = capacity
        self.rate = capacity / 60.0
        self._level = float(capacity)
        self._stamp = now

    def level(self, now: float) -> float:
        """Units available at *now*."""
        if now > self._stamp:
            self._level = min(float(self.capacity), self._level + (now - self._stamp) * self.rate)
            self._stamp = now
        return self._level

    def wait(self, units: int, now: float) -> float:
        """Seconds until *units* are available (0: now; for more than the
        capacity, the time until the bucket is full)."""
        missing = min(units, self.capacity) - self.level(now)
        return max(0.0, missing / self.rate)

    def take(self, units: int, now: float) -> None:
        self._level = self.level(now) - units

    def until_full(self, now: float) -> float:
        return (self.capacity - self.level(now)) / self.rate

    def refill(self, now: float) -> None:
        self._level = float(self.capacity)
        self._stamp = now


def format_reset(seconds: float) -> str:
    """A duration as OpenAI's ``x-ratelimit-reset-*`` headers write it (Go's
    duration format, to the millisecond): ``"120ms"``, ``"1s"``, ``"1m30.5s"``,
    ``"6m0s"``, ``"1h0m0s"``."""
    ms = max(0, math.ceil(seconds * 1000 - 1e-6))
    if ms < 1000:
        return f"{ms}ms" if ms else "0s"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    secs = f"{whole}.{frac:03d}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    if minutes:
        return f"{minutes}m{secs}"
    return secs


def _rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(math.ceil(timestamp), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def retry_headers(seconds: float, *, with_ms: bool = True) -> list[Header]:
    """``retry-after`` in whole seconds (rounded up, at least 1) and, with
    *with_ms*, ``retry-after-ms``."""
    headers = [(b"retry-after", b"%d" % max(1, math.ceil(seconds - 1e-9)))]
    if with_ms:
        headers.append((b"retry-after-ms", b"%d" % max(1, math.ceil(seconds * 1000 - 1e-6))))
    return headers


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a request was not admitted: the ``"requests"`` or ``"tokens"`` limit,
    the units asked for, and the seconds until they would fit."""

    kind: str
    limit: int
    used: int
    requested: int
    wait: float


_PER_MINUTE = {"requests": "requests per min (RPM)", "tokens": "tokens per min (TPM)"}


class RateLimits:
    """Requests-per-minute and tokens-per-minute buckets, either optional.

    A request is admitted only if every configured bucket holds its units; then
    all of them are debited (a rejected request takes nothing).
    """

    __slots__ = ("_clock", "requests", "tokens")

    def __init__(self, rpm: int | None, tpm: int | None, clock: Clock) -> None:
        self._clock = clock
        now = clock.monotonic()
        self.requests = TokenBucket(rpm, now) if rpm is not None else None
        self.tokens = TokenBucket(tpm, now) if tpm is not None else None

    def reconfigure(self, rpm: int | None, tpm: int | None) -> None:
        """Apply new limits; a bucket whose limit did not change keeps its level,
        a changed one starts full."""
        now = self._clock.monotonic()
        if rpm is None or self.requests is None or self.requests.capacity != rpm:
            self.requests = TokenBucket(rpm, now) if rpm is not None else None
        if tpm is None or self.tokens is None or self.tokens.capacity != tpm:
            self.tokens = TokenBucket(tpm, now) if tpm is not None else None

    def refill(self) -> None:
        now = self._clock.monotonic()
        for bucket in (self.requests, self.tokens):
            if bucket is not None:
                bucket.refill(now)

    def admit(self, tokens: int) -> Rejection | None:
        """Take 1 request and *tokens* tokens, or say which limit refuses them."""
        now = self._clock.monotonic()
        for kind, bucket, units in (
            ("requests", self.requests, 1),
            ("tokens", self.tokens, tokens),
        ):
            if bucket is None:
                continue
            wait = bucket.wait(units, now)
            if wait > 1e-9 or units > bucket.capacity:
                used = bucket.capacity - math.floor(bucket.level(now))
                return Rejection(kind, bucket.capacity, used, units, wait)
        if self.requests is not None:
            self.requests.take(1, now)
        if self.tokens is not None:
            self.tokens.take(tokens, now)
        return None

    def openai_headers(self) -> list[Header]:
        """``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``."""
        now = self._clock.monotonic()
        out: list[Header] = []
        for kind, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            if bucket is not None:
                remaining = max(0, math.floor(bucket.level(now) + 1e-9))
                out += [
                    (b"x-ratelimit-limit-" + kind.encode(), b"%d" % bucket.capacity),
                    (b"x-ratelimit-remaining-" + kind.encode(), b"%d" % remaining),
                    (
                        b"x-ratelimit-reset-" + kind.encode(),
                        format_reset(bucket.until_full(now)).encode(),
                    ),
                ]
        return out

    def anthropic_headers(self) -> list[Header]:
        """``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}``, the
        reset as the RFC 3339 UTC time the bucket is full again."""
        now = self._clock.monotonic()
        wall = self._clock.now()
        out: list[Header] = []
        for kind, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            if bucket is not None:
                prefix = b"anthropic-ratelimit-" + kind.encode()
                remaining = max(0, math.floor(bucket.level(now) + 1e-9))
                out += [
                    (prefix + b"-limit", b"%d" % bucket.capacity),
                    (prefix + b"-remaining", b"%d" % remaining),
                    (prefix + b"-reset", _rfc3339(wall + bucket.until_full(now)).encode()),
                ]
        return out


def openai_rejection(rejection: Rejection, model: str) -> Reply:
    """OpenAI's 429 for a spent limit (or a request bigger than the TPM limit)."""
    per = _PER_MINUTE[rejection.kind]
    where = f"Rate limit reached for {model} in organization org-hotpath-mock on {per}"
    if rejection.requested > rejection.limit:
        message = (
            f"Request too large for {model} in organization org-hotpath-mock on {per}: "
            f"Limit {rejection.limit}, Requested {rejection.requested}. The input or output "
            "tokens must be reduced in order to run successfully. (hotpath mock)"
        )
    else:
        message = (
            f"{where}: Limit {rejection.limit}, Used {rejection.used}, "
            f"Requested {rejection.requested}. Please try again in "
            f"{format_reset(rejection.wait)}. (hotpath mock)"
        )
    return openai_error(
        429,
        message,
        rejection.kind,
        code="rate_limit_exceeded",
        headers=retry_headers(rejection.wait),
    )


def anthropic_rejection(rejection: Rejection) -> Reply:
    """Anthropic's 429 ``rate_limit_error`` for a spent limit."""
    message = (
        f"This request would exceed the rate limit for your organization of "
        f"{rejection.limit} {rejection.kind} per minute. (hotpath mock)"
    )
    headers = retry_headers(rejection.wait, with_ms=False)
    return anthropic_error(429, message, "rate_limit_error", headers)


def openai_context_error(window: int, tokens: int) -> Reply:
    """OpenAI's 400 ``context_length_exceeded``."""
    message = (
        f"This model's maximum context length is {window} tokens. However, your messages "
        f"resulted in {tokens} tokens. Please reduce the length of the messages."
    )
    return openai_error(400, message, param="messages", code="context_length_exceeded")


def anthropic_context_error(window: int, prompt: int, max_tokens: int) -> Reply:
    """Anthropic's 400 for a prompt too long, or a prompt plus ``max_tokens`` too
    long, for the context window."""
    if prompt > window:
        return anthropic_error(400, f"prompt is too long: {prompt} tokens > {window} maximum")
    message = (
        f"input length and `max_tokens` exceed context limit: {prompt} + {max_tokens} > "
        f"{window}, decrease input length or `max_tokens` and try again"
    )
    return anthropic_error(400, message)
