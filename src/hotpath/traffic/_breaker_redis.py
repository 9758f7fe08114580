"""Circuit breaker states shared between replicas through Redis.

Each replica keeps its own :class:`~hotpath.traffic._breaker.CircuitBreaker` and
decides locally; no call touches Redis. Only *decisions* travel: when a breaker
opens (from closed or half-open) or closes after its trials, :class:`RedisBreakerSync`
writes the new state and PUBLISHes it, in one script, from a background task::

    {prefix}{name}     a hash: s (state), u (open-until wall time), v (version)
    {prefix}events     the channel: "{v} {state} {until} {name}" per transition

Every replica (the writer too) applies each message through
:meth:`CircuitBreaker.force_state`, in the order Redis ran the writes, so after
the last message all replicas agree with the key. Versions are Redis microsecond
times (bumped past the stored one), so a message or read older than what a replica
has applied is ignored, even across the key's expiry. Open -> half-open is not
shared: the open-until time is, so every replica turns half-open at the same wall
time and lets its own trial calls through; the first to decide shares it.

Redis down: breakers carry on locally; the sync logs one warning per outage on
logger ``hotpath.traffic``, counts it, and retries with backoff (jittered, capped).
Once Redis answers and the subscription is back, it re-reads the shared states,
then publishes the transitions made meanwhile that are still current (an open
whose time has run out is dropped, not resurrected).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from dataclasses import dataclass
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from hotpath._clock import Clock, SystemClock
from hotpath._errors import ConfigError, short_repr
from hotpath.cache._redis_events import Subscriber
from hotpath.cache._redis_url import redact
from hotpath.traffic._breaker import BreakerState, CircuitBreaker

__all__ = ["BreakerSyncStats", "RedisBreakerSync"]

log = logging.getLogger("hotpath.traffic")

_DEADLINE = 0.5  # seconds for one round of Redis calls (connecting included)
_MIN_DELAY = 0.05  # first wait before retrying after a fault ...
_MAX_DELAY = 2.0  # ... doubling up to this (jittered): the subscriber's own cap
_KEEP = 3600.0  # seconds a shared state outlives its open time (a closed one: this long)

# KEYS[1]: the breaker's hash. ARGV: state, until, ttl (ms), channel, name.
_WRITE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local old = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
local v = string.format('%.0f', math.max(old + 1, now))
redis.call('HSET', KEYS[1], 's', ARGV[1], 'u', ARGV[2], 'v', v)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], v .. ' ' .. ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[5])
return v
"""

_SHARED = ("open", "closed")  # the states a replica shares (half-open is local)


@dataclass(frozen=True, kw_only=True, slots=True)
class BreakerSyncStats:
    """Counters of a :class:`RedisBreakerSync`.

    ``published``: local transitions shared; ``applied``: shared transitions taken
    in (messages and reads newer than the last one, own ones included);
    ``dropped``: local transitions made during an outage and stale once Redis
    returned; ``outages``: times Redis became unreachable; ``faults``: failed
    attempts (each retry of an outage counts).
    """

    healthy: bool
    breakers: int
    published: int
    applied: int
    dropped: int
    outages: int
    faults: int


class RedisBreakerSync:
    """Shares the transitions of attached breakers with every replica (module docstring).

    Give a ``url`` (``redis://``, ``rediss://``, ``unix://``) or a ``client`` (which
    the sync uses but never closes; its pool's settings also serve the pub/sub
    connection). ``prefix`` namespaces the keys and the channel. ``clock`` dates
    outages. Call :meth:`start` and :meth:`aclose` in the loop that uses the breakers.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        prefix: str = "hp:cb:",
        clock: Clock | None = None,
    ) -> None:
        if (url is None) == (client is None):
            raise ConfigError(
                f"RedisBreakerSync needs exactly one of url= or client=, got url={url!r} "
                f"and client={short_repr(client)}"
            )
        if url is not None and (not isinstance(url, str) or "://" not in url):
            raise ConfigError(f"url must be a redis:// URL, got {short_repr(url)}")
        if client is not None and not isinstance(client, Redis):
            raise ConfigError(
                f"client must be a redis.asyncio.Redis, got {type(client).__name__} "
                f"{short_repr(client)}"
            )
        if not isinstance(prefix, str) or not prefix:
            raise ConfigError(f"prefix must be a non-empty str, got {short_repr(prefix)}")
        self._url = url
        self._where = redact(url) if url is not None else short_repr(client)
        self._own_client = client is None
        self._client: Redis | None = client
        # The pool whose settings our own connections copy, when given a client.
        self._base_pool = client.connection_pool if client is not None else None
        self._prefix = prefix
        self._channel = (prefix + "events").encode()
        self._clock: Clock = clock or SystemClock()

        self._breakers: dict[str, CircuitBreaker] = {}
        self._versions: dict[str, int] = {}  # the last shared version applied, per name
        # Local transitions to share, the latest per name: (state, open-until wall time).
        self._pending: dict[str, tuple[BreakerState, float]] = {}
        self._unread: set[str] = set()  # names whose shared state is to be read

        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._subscriber: Subscriber | None = None
        self._sub_connects = 0
        self._closed = False
        self._outage_since: float | None = None
        self._published = self._applied = self._dropped = self._outages = self._faults = 0

    def __repr__(self) -> str:
        return f"RedisBreakerSync({self._where}, prefix={self._prefix!r})"

    # -- wiring ---------------------------------------------------------------------

    def attach(self, breaker: CircuitBreaker) -> None:
        """Share ``breaker``'s transitions (before or after :meth:`start`).

        Attached after start, its shared state is read in the background.
        """
        if not isinstance(breaker, CircuitBreaker):
            raise ConfigError(
                f"breaker must be a CircuitBreaker, got {type(breaker).__name__} "
                f"{short_repr(breaker)}"
            )
        if breaker.name in self._breakers:
            raise ConfigError(f"a breaker named {breaker.name!r} is already attached")
        if breaker._sync is not None:
            raise ConfigError(f"breaker {breaker.name!r} is already attached to a sync")
        self._breakers[breaker.name] = breaker
        breaker._sync = self._on_local
        if self._loop is not None:
            self._unread.add(breaker.name)
            self._kick()

    async def start(self) -> None:
        """Subscribe, then read the shared state of every attached breaker.

        Returns once both are done, or after about a second if Redis does not
        answer (the sync then keeps trying in the background; breakers work locally).
        """
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self._client is None:
            self._client = self._new_client(max_connections=4, retries=1)
        self._subscriber = Subscriber(
            self._connect_subscriber,
            self._channel,
            _DEADLINE,
            self._on_message,
            self._on_reset,
            label="circuit breaker sync",
            # Its connection-level lines; the sync logs one warning per outage itself.
            logger=logging.getLogger("hotpath.traffic.breaker_sync"),
        )
        self._subscriber.start()
        self._unread.update(self._breakers)
        try:
            if not await self._subscriber.wait_ready(2 * _DEADLINE):
                raise RedisConnectionError("the subscription was not confirmed")
            await self._sync_once()
        except Exception as exc:  # noqa: BLE001 - any fault: carry on locally, retry later
            self._fault(exc)
        self._task = self._loop.create_task(self._run(), name="hotpath-breaker-sync")
        if self._outage_since is not None or self._pending or self._unread:
            self._wake.set()

    async def aclose(self) -> None:
        """Stop listening and publishing; detach the breakers (they carry on locally)."""
        self._closed = True
        for breaker in self._breakers.values():
            if breaker._sync == self._on_local:
                breaker._sync = None
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])
        sub, self._subscriber = self._subscriber, None
        if sub is not None:
            await sub.stop()
        client, self._client = self._client, None
        if client is not None and self._own_client:
            with contextlib.suppress(Exception):
                await client.aclose()

    # -- observing --------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """True while started, Redis answers and the subscription is live."""
        return self._task is not None and self._outage_since is None

    def stats(self) -> BreakerSyncStats:
        """A snapshot of the counters (see :class:`BreakerSyncStats`)."""
        return BreakerSyncStats(
            healthy=self.healthy,
            breakers=len(self._breakers),
            published=self._published,
            applied=self._applied,
            dropped=self._dropped,
            outages=self._outages,
            faults=self._faults,
        )

    # -- local transitions out -----------------------------------------------------------

    def _on_local(self, breaker: CircuitBreaker, old: BreakerState, new: BreakerState) -> None:
        """A breaker decided: queue the decision (never awaits: this is the hot path)."""
        if new == "open":
            self._pending[breaker.name] = ("open", breaker._open_until_wall() or 0.0)
        elif new == "closed" and old == "half_open":
            self._pending[breaker.name] = ("closed", 0.0)
        else:
            return
        self._kick()

    def _kick(self) -> None:
        """Wake the background task, from its loop or any other thread."""
        loop = self._loop
        if loop is None or self._closed:
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            with contextlib.suppress(RuntimeError):  # that loop is closed
                loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        """Read and publish whenever woken; on a fault, retry with backoff until it works."""
        delay = _MIN_DELAY
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                if self._outage_since is not None:
                    sub = self._subscriber
                    if sub is None or not await sub.wait_ready(2 * _DEADLINE):
                        raise RedisConnectionError("the subscription is not back yet")
                await self._sync_once()
            except Exception as exc:  # noqa: BLE001 - any fault: back off, then retry
                self._fault(exc)
                await asyncio.sleep(delay * (0.5 + random.random()))  # jitter: no herds
                delay = min(delay * 2, _MAX_DELAY)
                self._wake.set()
                continue
            delay = _MIN_DELAY
            if self._outage_since is not None:
                log.info(
                    "circuit breaker sync: Redis at %s is back after %.1f s; shared states re-read",
                    self._where,
                    self._clock.now() - self._outage_since,
                )
                self._outage_since = None

    async def _sync_once(self) -> None:
        """Read the states to read, then publish the pending transitions still current."""
        client = self._client
        if client is None:
            raise RuntimeError("the sync is closed")
        async with asyncio.timeout(_DEADLINE):
            names = [name for name in self._unread if name in self._breakers]
            if names:
                async with client.pipeline(transaction=False) as pipe:
                    for name in names:
                        pipe.hmget(self._key(name), "s", "u", "v")
                    rows: list[list[Any]] = await pipe.execute()
                self._unread.difference_update(names)
                for name, (state, until, version) in zip(names, rows, strict=True):
                    if version is not None:
                        self._apply(name, state, until, version)
            while self._pending:
                name, (state, until) = next(iter(self._pending.items()))
                breaker = self._breakers[name]
                now = breaker._clock.now()  # the clock ``until`` was taken from
                if (state == "open" and until <= now) or (
                    state == "closed" and breaker.state != "closed"
                ):
                    del self._pending[name]  # stale: made during an outage, since overtaken
                    self._dropped += 1
                    continue
                ttl = (max(0.0, until - now) if state == "open" else 0.0) + _KEEP
                await client.eval(
                    _WRITE,
                    1,
                    self._key(name),
                    state,
                    repr(until),
                    math.ceil(ttl * 1000),
                    self._channel,
                    name,
                )
                if self._pending.get(name) == (state, until):
                    del self._pending[name]
                self._published += 1

    # -- shared transitions in -------------------------------------------------------

    def _on_message(self, payload: bytes) -> None:
        try:
            version, state, until, name = payload.decode().split(" ", 3)
        except (UnicodeDecodeError, ValueError):
            log.warning("circuit breaker sync: ignored a malformed message %r", payload[:100])
            return
        self._apply(name, state, until, version)

    def _apply(self, name: str, state: object, until: object, version: object) -> None:
        """Take in a shared state unless this replica has applied a newer one."""
        breaker = self._breakers.get(name)
        if breaker is None:
            return
        try:
            text = state.decode() if isinstance(state, bytes) else str(state)
            number = int(version)  # type: ignore[call-overload]
            end = float(until)  # type: ignore[arg-type]
        except (TypeError, ValueError, UnicodeDecodeError):
            log.warning("circuit breaker sync: ignored a malformed state for %r", name)
            return
        if text not in _SHARED or number <= self._versions.get(name, 0):
            return
        self._versions[name] = number
        self._applied += 1
        if text == "open":
            breaker.force_state("open", until=end)
        else:
            breaker.force_state("closed")

    def _on_reset(self) -> None:
        """The subscription is back after a drop: messages were lost, read everything."""
        self._unread.update(self._breakers)
        self._kick()

    # -- faults and clients ------------------------------------------------------------

    def _fault(self, exc: BaseException) -> None:
        self._faults += 1
        self._unread.update(self._breakers)  # re-read all once Redis is back
        if self._outage_since is not None:
            return
        self._outage_since = self._clock.now()
        self._outages += 1
        log.warning(
            "circuit breaker sync: Redis at %s unavailable (%s: %s); breakers carry on "
            "locally, retrying in the background",
            self._where,
            type(exc).__name__,
            exc,
        )

    def _connect_subscriber(self) -> Redis:
        """A fresh client for each subscription attempt; every one after the first
        means the last subscription failed, which is an outage."""
        self._sub_connects += 1
        if self._sub_connects > 1 and not self._closed:
            self._fault(RedisConnectionError("the subscription dropped"))
            self._kick()
        return self._new_client(max_connections=1, retries=0)

    def _new_client(self, *, max_connections: int, retries: int) -> Redis:
        """A client of our own: from the URL, or with the given client's settings.

        No per-read socket timeout: each round of calls runs under one deadline, and
        the subscriber waits for messages with its own.
        """
        retry = Retry(NoBackoff(), retries, supported_errors=(RedisConnectionError,))
        if self._url is not None:
            pool = ConnectionPool.from_url(
                self._url,
                max_connections=max_connections,
                socket_timeout=None,
                socket_connect_timeout=_DEADLINE,
                retry=retry,
            )
        else:
            base = self._base_pool
            if base is None:  # unreachable: __init__ has a url or a client
                raise RuntimeError("no URL and no client to connect with")
            kwargs = {**base.connection_kwargs, "retry": retry}
            pool = ConnectionPool(
                connection_class=base.connection_class, max_connections=max_connections, **kwargs
            )
        return Redis.from_pool(pool)

    def _key(self, name: str) -> str:
        return self._prefix + name
