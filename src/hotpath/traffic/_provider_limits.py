"""Pacing requests to one upstream deployment by the limits it reports.

Providers say how much of their rate limit is left on every reply: OpenAI in
``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` (resets as Go-style
durations such as ``6m0s`` or ``20ms``), Anthropic in
``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}``
(resets as RFC 3339 times), and both in ``retry-after`` on a 429. Reading them lets
the gateway wait (or send elsewhere) instead of bouncing off 429s:

* after a 429 (or a 503 with Retry-After) the deployment is *held* until the
  Retry-After, or the reset of the spent limit, or one second;
* while a limit is spent (no requests left, or fewer tokens than a request needs)
  the deployment waits for that limit's reset;
* when less than ``pace_below`` of a limit is left, the rest is spread evenly over
  the time to its reset rather than spent in a burst that ends in a 429.

Header values that do not parse are ignored (and logged at debug level): a
provider's odd header must never fail a call.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from hotpath._clock import Clock, SystemClock
from hotpath._options import check_non_negative

__all__ = [
    "ProviderLimitStats",
    "ProviderLimits",
    "parse_duration",
    "parse_http_date",
    "parse_retry_after",
    "parse_timestamp",
]

log = logging.getLogger("hotpath.traffic")

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|ns|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}

# Limit name -> (OpenAI header suffix, Anthropic header stem); None where absent.
_KINDS: dict[str, tuple[str | None, str]] = {
    "requests": ("requests", "anthropic-ratelimit-requests"),
    "tokens": ("tokens", "anthropic-ratelimit-tokens"),
    "input-tokens": (None, "anthropic-ratelimit-input-tokens"),
    "output-tokens": (None, "anthropic-ratelimit-output-tokens"),
}
# The limits a request's (estimated prompt) tokens are counted against; output
# tokens are unknown before the answer, so that limit only blocks once spent.
_TOKEN_KINDS = ("tokens", "input-tokens")
# Hold this long after a 429 that says nothing about when to come back.
_DEFAULT_HOLD = 1.0


def parse_duration(text: str) -> float | None:
    """Seconds in a Go-style duration (``"1h2m3.5s"``, ``"6m0s"``, ``"20ms"``,
    ``"0.5s"``) or a plain number of seconds; ``None`` if it is not one."""
    text = text.strip()
    if not text:
        return None
    try:
        plain = float(text)
    except ValueError:
        pass
    else:
        return plain if math.isfinite(plain) and plain >= 0 else None
    total = 0.0
    pos = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) and math.isfinite(total) else None


def parse_timestamp(text: str) -> float | None:
    """An RFC 3339 time (``"2024-05-01T12:00:30Z"``) as epoch seconds, or ``None``."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def parse_http_date(text: str) -> float | None:
    """An HTTP date (``"Wed, 21 Oct 2015 07:28:00 GMT"``) as epoch seconds, or ``None``."""
    try:
        when = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP
    date, read against the wall-clock ``now``); ``None`` when absent or malformed.
    Header names must be lower case."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        ms = _number(raw_ms)
        if ms is not None:
            return ms / 1000.0
        log.debug("ignoring malformed retry-after-ms header %r", raw_ms)
    raw = headers.get("retry-after")
    if raw is None:
        return None
    seconds = _number(raw)
    if seconds is not None:
        return seconds
    when = parse_http_date(raw)
    if when is not None:
        return max(0.0, when - now)
    log.debug("ignoring malformed retry-after header %r", raw)
    return None


def _number(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


@dataclass(frozen=True, slots=True)
class ProviderLimitStats:
    """The limits last reported, by name (``requests``, ``tokens``, ``input-tokens``,
    ``output-tokens``): ``limits``, ``remaining`` (less what was sent since),
    ``resets`` (seconds from now until each future reset); ``holds`` counts the
    holds after a 429 and ``held_for`` is the seconds the current one has left."""

    limits: Mapping[str, int]
    remaining: Mapping[str, int]
    resets: Mapping[str, float]
    holds: int
    held_for: float


# A reply that reports any limit reports how much of it remains.
_MARKERS = tuple(
    name
    for openai, anthropic in _KINDS.values()
    for name in (
        f"x-ratelimit-remaining-{openai}" if openai is not None else None,
        f"{anthropic}-remaining",
    )
    if name is not None
)


class _Limit:
    __slots__ = ("limit", "remaining", "reset_at")

    def __init__(self) -> None:
        self.limit: int | None = None
        self.remaining: int | None = None
        self.reset_at: float | None = None  # monotonic


class ProviderLimits:
    """What one upstream deployment said about its rate limits, and the pacing that
    follows. Feed it every reply with :meth:`observe`, ask :meth:`delay` before each
    send and report the send with :meth:`sent`. Not thread-safe."""

    __slots__ = ("_clock", "_held_until", "_holds", "_last_send", "_limits", "_pace_below")

    def __init__(self, *, clock: Clock | None = None, pace_below: float = 0.1) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._pace_below = check_non_negative(pace_below, "pace_below")
        self._limits = {kind: _Limit() for kind in _KINDS}
        self._held_until = 0.0
        self._holds = 0
        self._last_send = -math.inf

    @property
    def held_until(self) -> float:
        """Monotonic time the current hold ends; 0.0 when not held."""
        return self._held_until if self._held_until > self._clock.monotonic() else 0.0

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Read a reply's status and (lower-case) headers."""
        if status != 429 and status != 503 and not any(h in headers for h in _MARKERS):
            return  # nothing to read (most replies of most upstreams): one cheap pass
        mono = self._clock.monotonic()
        wall = self._clock.now()
        for kind, (openai, anthropic) in _KINDS.items():
            limit = self._limits[kind]
            if openai is not None:
                self._read_counts(
                    limit, headers, f"x-ratelimit-limit-{openai}", f"x-ratelimit-remaining-{openai}"
                )
                raw = headers.get(f"x-ratelimit-reset-{openai}")
                if raw is not None:
                    seconds = parse_duration(raw)
                    if seconds is None:
                        log.debug("ignoring malformed x-ratelimit-reset-%s %r", openai, raw)
                    else:
                        limit.reset_at = mono + seconds
            self._read_counts(limit, headers, f"{anthropic}-limit", f"{anthropic}-remaining")
            raw = headers.get(f"{anthropic}-reset")
            if raw is not None:
                when = parse_timestamp(raw)
                if when is None:
                    log.debug("ignoring malformed %s-reset %r", anthropic, raw)
                else:
                    limit.reset_at = mono + max(0.0, when - wall)
        if status == 429 or status == 503:
            retry_after = parse_retry_after(headers, wall)
            if retry_after is not None:
                self._hold(mono + retry_after)
            elif status == 429:
                resets = [
                    lim.reset_at
                    for lim in self._limits.values()
                    if lim.remaining == 0 and lim.reset_at is not None and lim.reset_at > mono
                ]
                self._hold(max(resets) if resets else mono + _DEFAULT_HOLD)

    def delay(self, tokens: int = 0) -> float:
        """Seconds to wait before sending a request of about ``tokens`` tokens (0.0:
        send now)."""
        now = self._clock.monotonic()
        wait = self._held_until - now
        for kind, limit in self._limits.items():
            reset_at = limit.reset_at
            remaining = limit.remaining
            if reset_at is None or remaining is None or reset_at <= now:
                continue  # nothing known, or the window already reset
            if kind == "requests":
                need = 1
            elif kind in _TOKEN_KINDS:
                need = tokens
            else:
                need = 0
            if remaining <= 0 or remaining < need:
                # The reset is when the quota is whole again; providers refill it
                # continuously, so the units missing come back pro rata. (With the
                # need unknown, as for output tokens, wait for the whole quota.)
                span = reset_at - now
                total = limit.limit
                if need > 0 and total is not None and total > remaining:
                    missing = max(1, need - remaining)
                    span = min(span, span * missing / (total - remaining))
                wait = max(wait, span)
            elif (
                need > 0 and limit.limit is not None and remaining < self._pace_below * limit.limit
            ):
                spacing = (reset_at - now) * need / remaining
                wait = max(wait, self._last_send + spacing - now)
        return wait if wait > 0.0 else 0.0

    def sent(self, tokens: int = 0) -> None:
        """Count a request of about ``tokens`` tokens that was just sent."""
        self._last_send = self._clock.monotonic()
        requests = self._limits["requests"]
        if requests.remaining is not None:
            requests.remaining = max(0, requests.remaining - 1)
        if tokens > 0:
            for kind in _TOKEN_KINDS:
                limit = self._limits[kind]
                if limit.remaining is not None:
                    limit.remaining = max(0, limit.remaining - tokens)

    def stats(self) -> ProviderLimitStats:
        now = self._clock.monotonic()
        limits = self._limits.items()
        return ProviderLimitStats(
            limits={k: v.limit for k, v in limits if v.limit is not None},
            remaining={k: v.remaining for k, v in limits if v.remaining is not None},
            resets={
                k: v.reset_at - now
                for k, v in limits
                if v.reset_at is not None and v.reset_at > now
            },
            holds=self._holds,
            held_for=max(0.0, self._held_until - now),
        )

    def _hold(self, until: float) -> None:
        self._holds += 1
        if until > self._held_until:
            self._held_until = until

    @staticmethod
    def _read_counts(
        limit: _Limit, headers: Mapping[str, str], limit_name: str, remaining_name: str
    ) -> None:
        raw = headers.get(limit_name)
        if raw is not None:
            value = _count(raw)
            if value is None or value == 0:
                log.debug("ignoring malformed %s %r", limit_name, raw)
            else:
                limit.limit = value
        raw = headers.get(remaining_name)
        if raw is not None:
            value = _count(raw)
            if value is None:
                log.debug("ignoring malformed %s %r", remaining_name, raw)
            else:
                limit.remaining = value

    def __repr__(self) -> str:
        return f"ProviderLimits(pace_below={self._pace_below!r})"


def _count(text: str) -> int | None:
    try:
        value = int(text.strip())
    except ValueError:
        return None
    return value if value >= 0 else None
