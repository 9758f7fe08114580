"""Rate limits shared by every process through Redis: one Lua script per call.

:meth:`RedisRateLimiter.acquire` is exactly one round trip (``EVALSHA``) whatever
the number of limits: the script reads every counter, decides all or nothing with
the arithmetic of :func:`~hotpath.traffic._gcra.judge`, writes the counters it
charges (each with an expiry, so idle keys vanish) and returns the counters'
times; the rest of the :class:`Decision` is computed here by ``judge`` itself, on
the same float values. Time is Redis ``TIME`` (replicas whose clocks disagree
still share one timeline) unless a clock was given.

When Redis fails or does not answer within ``timeout``, the call is decided by
``on_error`` ("open": admit, "closed": refuse), the outage is logged once, and
Redis is left alone for ``retry_interval`` seconds before the next try.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from hotpath._clock import Clock, SystemClock
from hotpath._errors import ConfigError, short_repr
from hotpath._options import check_non_negative, check_positive, check_text
from hotpath.cache._redis_url import redact
from hotpath.cache._watchdog import Watchdog
from hotpath.traffic._gcra import (
    EPSILON,
    Decision,
    Limit,
    Rate,
    RateLimiterStats,
    bad_limit,
    check_finite,
    check_limits,
    judge,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["ACQUIRE", "EPOCH", "SETTLE", "UNAVAILABLE", "RedisRateLimiter"]

log = logging.getLogger("hotpath.traffic")

UNAVAILABLE = "redis-unavailable"
"""``Decision.limit`` of a call refused because Redis could not be asked (on_error="closed")."""

# Times in the scripts and in the stored counters are seconds since EPOCH: the
# smaller number keeps ~30x more precision after the point than Unix time does
# (every process sharing counters must use the same value; it is in the scripts).
EPOCH = 1_700_000_000

# KEYS: the counters. ARGV[1]: now in seconds since EPOCH ('' = Redis TIME),
# ARGV[2]: max_wait + EPSILON, ARGV[3]: expiry slack in ms, then per key: interval,
# capacity, tolerance, cost. Returns {allowed, now, tat_1 .. tat_n}, floats as %.17g
# strings (Lua would truncate numbers to integers, and tostring keeps 14 digits).
# The arithmetic is judge()'s, operation for operation.
ACQUIRE = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = (tonumber(t[1]) - 1700000000) + tonumber(t[2]) / 1000000
end
local n = #KEYS
local tats = {}
local need = -math.huge
for i = 1, n do
  local j = 4 * i
  local cost = tonumber(ARGV[j + 3])
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if not tat or tat < now then tat = now end
  tats[i] = tat
  local w = math.huge
  if cost <= tonumber(ARGV[j + 1]) then
    w = tat + cost * tonumber(ARGV[j]) - now - tonumber(ARGV[j + 2])
  end
  if w > need then need = w end
end
local allowed = 0
if not (need > tonumber(ARGV[2])) then
  allowed = 1
  local slack = tonumber(ARGV[3])
  for i = 1, n do
    local j = 4 * i
    local cost = tonumber(ARGV[j + 3])
    if cost > 0 then
      local new = tats[i] + cost * tonumber(ARGV[j])
      local ms = math.ceil((new - now) * 1000) + slack
      redis.call('SET', KEYS[i], string.format('%.17g', new), 'PX', string.format('%d', ms))
    end
  end
end
local out = {allowed, string.format('%.17g', now)}
for i = 1, n do out[i + 2] = string.format('%.17g', tats[i]) end
return out
"""

# KEYS[1]: the counter. ARGV: now ('' = Redis TIME), expiry slack in ms, interval,
# delta in units. Never leaves the counter behind now (fuller than idle).
SETTLE = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = (tonumber(t[1]) - 1700000000) + tonumber(t[2]) / 1000000
end
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local new = tat + tonumber(ARGV[4]) * tonumber(ARGV[3])
if new <= now then
  redis.call('DEL', KEYS[1])
  return 0
end
local ms = math.ceil((new - now) * 1000) + tonumber(ARGV[2])
redis.call('SET', KEYS[1], string.format('%.17g', new), 'PX', string.format('%d', ms))
return 1
"""

# A counter's expiry runs that much past the moment it is idle again. With Redis
# TIME that only absorbs rounding; with an injected clock, which need not run with
# Redis's own, a key must not vanish while that clock still counts it busy.
_SLACK_TIME_MS = 1_000
_SLACK_CLOCK_MS = 60_000
_SCHEMES = ("redis://", "rediss://", "unix://")


class RedisRateLimiter:
    """GCRA rate limits in Redis, shared by every process that uses the same
    ``prefix``: the async interface of :class:`LocalRateLimiter`.

    Give a ``url`` (the limiter owns and closes its client) or a ``client`` (left
    open by :meth:`aclose`). ``timeout`` bounds every call to Redis, connecting
    included; ``on_error`` decides calls while Redis is unavailable.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        prefix: str = "hp:rl:",
        on_error: Literal["open", "closed"] = "open",
        timeout: float = 0.25,
        retry_interval: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        if (url is None) == (client is None):
            raise ConfigError(
                f"give exactly one of url and client, got url={short_repr(url)}, "
                f"client={short_repr(client)}"
            )
        if url is not None and (not isinstance(url, str) or not url.startswith(_SCHEMES)):
            raise ConfigError(
                f"url must start with redis://, rediss:// or unix://, got {short_repr(url)}"
            )
        if on_error not in ("open", "closed"):
            raise ConfigError(f"on_error must be 'open' or 'closed', got {short_repr(on_error)}")
        self._url = url
        self._given = client
        self._prefix = check_text(prefix, "prefix")
        self._on_error = on_error
        self._timeout = check_positive(timeout, "timeout")
        self._retry_interval = check_positive(retry_interval, "retry_interval")
        self._clock: Clock = clock or SystemClock()
        self._now: Clock | None = clock  # None: the scripts read Redis TIME
        self._slack = _SLACK_TIME_MS if clock is None else _SLACK_CLOCK_MS
        self._conns: dict[asyncio.AbstractEventLoop, tuple[Redis, Watchdog]] = {}
        self._closed = False
        self._healthy = True
        self._retry_at = 0.0
        self._decisions = self._allowed = self._refused = self._queued = 0
        self._errors = self._failed_open = self._failed_closed = 0
        self._acquire_sha = _sha(ACQUIRE)
        self._settle_sha = _sha(SETTLE)

    def __repr__(self) -> str:
        where = redact(self._url) if self._url is not None else "client=..."
        return (
            f"RedisRateLimiter({where!r}, prefix={self._prefix!r}, on_error={self._on_error!r}, "
            f"timeout={self._timeout!r}, retry_interval={self._retry_interval!r})"
        )

    # -- the interface ----------------------------------------------------------------

    async def acquire(self, limits: Sequence[Limit], *, max_wait: float = 0.0) -> Decision:
        """Admit and charge a call on every limit in ``limits``, or on none; one
        round trip. See :meth:`LocalRateLimiter.decide` for ``max_wait``."""
        if max_wait != 0.0:
            max_wait = check_non_negative(max_wait, "max_wait")
        if type(limits) is not list and type(limits) is not tuple:
            limits = check_limits(limits)
        keys: list[str] = []
        args: list[Any] = ["" if self._now is None else self._now.now() - EPOCH, max_wait + EPSILON]
        args.append(self._slack)
        prefix = self._prefix
        for lim in limits:
            if type(lim) is not Limit:
                raise bad_limit(limits)
            rate = lim.rate
            keys.append(prefix + lim.key)
            args += (rate.interval, rate.capacity, rate.tolerance, lim.cost)
        if not keys:
            return self._count(Decision(True, 0.0, 0.0, None, math.inf, 0.0))
        if not self._ready():
            return self._count(self._unavailable(limits))
        try:
            out = await self._script(ACQUIRE, self._acquire_sha, keys, args)
        except Exception as exc:  # noqa: BLE001 - any Redis fault is decided by on_error
            self._fault(exc, "acquire")
            return self._count(self._unavailable(limits))
        self._ok()
        tats = [float(x) for x in out[2:]]
        return self._count(judge(limits, tats, float(out[1]), max_wait))

    async def settle(self, key: str, rate: Rate, delta: float) -> None:
        """Correct a charge once the true cost is known: ``delta`` > 0 takes more
        units of ``rate`` on ``key``, < 0 gives units back (never beyond idle).
        One round trip; skipped (and counted as an error) while Redis is unavailable.
        """
        check_text(key, "key")
        if not isinstance(rate, Rate):
            raise ConfigError(f"rate must be a Rate, got {short_repr(rate)}")
        delta = check_finite(delta, "delta")
        if not delta or not self._ready():
            return
        now = "" if self._now is None else self._now.now() - EPOCH
        try:
            args = [now, self._slack, rate.interval, delta]
            await self._script(SETTLE, self._settle_sha, [self._prefix + key], args)
        except Exception as exc:  # noqa: BLE001 - a lost correction is logged, not raised
            self._fault(exc, "settle")
            return
        self._ok()

    @property
    def stats(self) -> RateLimiterStats:
        return RateLimiterStats(
            decisions=self._decisions,
            allowed=self._allowed,
            refused=self._refused,
            queued=self._queued,
            errors=self._errors,
            failed_open=self._failed_open,
            failed_closed=self._failed_closed,
            healthy=self._healthy,
        )

    async def aclose(self) -> None:
        """Close the client this limiter made (a given client is left open)."""
        self._closed = True
        conns, self._conns = self._conns, {}
        if self._given is not None:
            return
        current = asyncio.get_running_loop()
        for loop, (client, _) in conns.items():
            if loop is current:
                with contextlib.suppress(Exception):
                    await client.aclose()
            elif loop.is_running():
                with contextlib.suppress(RuntimeError):
                    asyncio.run_coroutine_threadsafe(client.aclose(), loop)

    # -- Redis ------------------------------------------------------------------------

    def _conn(self) -> tuple[Redis, Watchdog]:
        """This loop's client and deadline keeper, made on first use."""
        loop = asyncio.get_running_loop()
        conn = self._conns.get(loop)
        if conn is None:
            if self._closed:
                raise RuntimeError("the RedisRateLimiter is closed")
            for old in [lp for lp in self._conns if lp.is_closed()]:
                del self._conns[old]
            client = self._given if self._given is not None else self._new_client(self._url)
            dog = Watchdog(loop, self._timeout, period=max(0.01, self._timeout / 4))
            conn = self._conns[loop] = (client, dog)
        return conn

    def _new_client(self, url: str | None) -> Redis:
        """No per-read socket timeout (redis-py's costs a timer per read): every call
        runs under one :class:`Watchdog` deadline instead. One retry on a connection
        error, so the first call after a Redis restart reconnects instead of failing.
        """
        from redis.asyncio import ConnectionPool, Redis
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.retry import Retry

        pool = ConnectionPool.from_url(
            url or "",
            socket_timeout=None,
            socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        return Redis.from_pool(pool)

    async def _script(self, script: str, sha: str, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA of ``script``; on NOSCRIPT (a fresh or flushed Redis), load it and
        run it once more."""
        from redis.exceptions import NoScriptError

        client, dog = self._conn()
        with dog:
            try:
                return await client.evalsha(sha, len(keys), *keys, *args)
            except NoScriptError:
                await client.script_load(script)
                return await client.evalsha(sha, len(keys), *keys, *args)

    # -- faults -----------------------------------------------------------------------

    def _ready(self) -> bool:
        return self._healthy or self._clock.monotonic() >= self._retry_at

    def _ok(self) -> None:
        if not self._healthy:
            self._healthy = True
            log.warning("rate limiter: Redis is available again (prefix %r)", self._prefix)

    def _fault(self, exc: BaseException, op: str) -> None:
        self._errors += 1
        self._retry_at = self._clock.monotonic() + self._retry_interval
        level = logging.WARNING if self._healthy else logging.DEBUG
        self._healthy = False
        log.log(
            level,
            "rate limiter: Redis failed during %s (%s: %s); failing %s, next try in %gs",
            op,
            type(exc).__name__,
            exc,
            self._on_error,
            self._retry_interval,
        )

    def _unavailable(self, limits: Sequence[Limit]) -> Decision:
        """The decision without Redis: by on_error, except that a cost above a
        limit's capacity is refused for good either way."""
        for lim in limits:
            if lim.cost > lim.rate.capacity:
                return Decision(False, 0.0, math.inf, lim.key, lim.rate.capacity, 0.0)
        if self._on_error == "open":
            self._failed_open += 1
            return Decision(True, 0.0, 0.0, None, math.inf, 0.0)
        self._failed_closed += 1
        return Decision(False, 0.0, self._retry_interval, UNAVAILABLE, 0.0, 0.0)

    def _count(self, decision: Decision) -> Decision:
        self._decisions += 1
        if decision.allowed:
            self._allowed += 1
            if decision.wait:
                self._queued += 1
        else:
            self._refused += 1
        return decision


def _sha(script: str) -> str:
    """The name Redis gives ``script`` (EVALSHA), computed here to spare a SCRIPT LOAD."""
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()
