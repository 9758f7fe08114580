"""The hotpath exception tree.

Every error hotpath raises on purpose derives from :class:`HotpathError`::

    HotpathError
    ├── ConfigError              a bad option, URL or setting (names the key and value)
    ├── CacheError               anything the cache refuses
    │   ├── InvalidKeyError      a key that is not str / bytes (or not UTF-8 bytes)
    │   ├── InvalidTTLError      a TTL that is negative, zero, NaN or infinite
    │   ├── CodecError           a value the codec cannot encode
    │   └── KeyBuildError        @cached could not build a stable key from the arguments
    └── UpstreamError            an LLM provider call failed
        ├── UpstreamStatusError  the provider answered with an error status
        ├── UpstreamUnavailableError  the provider could not be reached (connect failed)
        ├── UpstreamTimeoutError      no answer (or no next chunk) within the timeout
        └── UpstreamStreamCutError    a streamed answer ended before it was complete
    TrafficError                 traffic control refused a call (it was not sent)
    ├── RateLimitedError         a rate limit is spent; ``retry_after`` says when to retry
    ├── OverloadedError          a concurrency limiter shed the call (queue full, deadline)
    ├── CircuitOpenError         the upstream's circuit breaker is open
    └── BudgetExceededError      a spend budget is used up (or this call would cross it)

Faults of a cache tier's backend (Redis down, a corrupt SQLite file) are *not*
raised to callers of the cache: the tier is marked unhealthy, the fault is
logged and counted in the stats, and the call carries on through the other tiers.
"""

from __future__ import annotations

__all__ = [
    "BudgetExceededError",
    "CacheError",
    "CircuitOpenError",
    "CodecError",
    "ConfigError",
    "HotpathError",
    "InvalidKeyError",
    "InvalidTTLError",
    "KeyBuildError",
    "OverloadedError",
    "RateLimitedError",
    "TrafficError",
    "UpstreamError",
    "UpstreamStatusError",
    "UpstreamStreamCutError",
    "UpstreamTimeoutError",
    "UpstreamUnavailableError",
]


class HotpathError(Exception):
    """Base class of every error hotpath raises on purpose."""


class ConfigError(HotpathError, ValueError):
    """A configuration value, option or URL is invalid."""


class CacheError(HotpathError):
    """The cache refused an operation."""


class InvalidKeyError(CacheError, TypeError):
    """A cache key is not a ``str`` or UTF-8 ``bytes``."""


class InvalidTTLError(CacheError, ValueError):
    """A TTL is not a positive, finite number of seconds."""


class CodecError(CacheError, TypeError):
    """The codec cannot encode a value."""


class KeyBuildError(CacheError, TypeError):
    """``@cached`` cannot build a stable key from a call's arguments."""


class UpstreamError(HotpathError):
    """A call to an LLM provider failed. ``upstream`` names the configured upstream."""

    def __init__(self, message: str, *, upstream: str = "") -> None:
        super().__init__(message)
        self.upstream = upstream


class UpstreamStatusError(UpstreamError):
    """The provider answered ``status`` (400 or above). ``body`` is its error body,
    already in OpenAI's shape; ``retry_after`` is its Retry-After, in seconds."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        body: bytes,
        retry_after: float | None = None,
        upstream: str = "",
    ) -> None:
        super().__init__(message, upstream=upstream)
        self.status = status
        self.body = body
        self.retry_after = retry_after


class UpstreamUnavailableError(UpstreamError):
    """The provider could not be reached: connection refused, DNS, TLS or reset."""


class UpstreamTimeoutError(UpstreamError):
    """The provider did not answer, or send the next chunk, within the timeout."""


class UpstreamStreamCutError(UpstreamError):
    """A streamed answer ended (connection closed) before its final event."""


class TrafficError(HotpathError):
    """Traffic control refused a call before it was sent. ``retry_after`` is the
    number of seconds after which the same call may succeed (``None``: unknown)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitedError(TrafficError):
    """A rate limit is spent. ``limit`` names it (e.g. ``tenant:acme:rpm``)."""

    def __init__(self, message: str, *, limit: str, retry_after: float | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.limit = limit


class OverloadedError(TrafficError):
    """A concurrency limiter shed the call: its queue was full, or the call's
    deadline could not be met. ``priority`` is the call's class."""

    def __init__(
        self, message: str, *, priority: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.priority = priority


class CircuitOpenError(TrafficError):
    """The circuit breaker of ``name`` (an upstream deployment) is open."""

    def __init__(self, message: str, *, name: str, retry_after: float | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.name = name


def short_repr(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages (which name the
    value received). A broken ``__repr__`` must not hide the real error."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - see the docstring
        text = f"<{type(value).__name__}>"
    if len(text) <= limit:
        return text
    return f"{text[: limit - 3]}... ({len(text)} chars)"


class BudgetExceededError(TrafficError):
    """A spend budget is used up, or the call's reserved cost would cross it.
    ``budget`` names it (e.g. ``tenant:acme:month``); ``limit`` and ``spent`` are
    USD; ``reset_at`` is when its period ends (Unix seconds)."""

    def __init__(
        self,
        message: str,
        *,
        budget: str,
        limit: float,
        spent: float,
        reset_at: float,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.budget = budget
        self.limit = limit
        self.spent = spent
        self.reset_at = reset_at
