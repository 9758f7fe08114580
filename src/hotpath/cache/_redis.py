"""The Redis tier (L2): ``redis://``, ``rediss://`` and ``unix://`` URLs.

Keys live under the tier's prefix in separate sub-namespaces, so a user key can
never collide with the tier's own bookkeeping::

    {prefix}v:{key}     a value: a Codec envelope, SET ... PX (no TTL if it never expires)
    {prefix}t:{tag}     a tag set: the keys stored with that tag
    {prefix}h           a sorted set of access counts (for warming)
    {prefix}l:{name}    a lock (``try_lock``)
    {prefix}events      the pub/sub channel of coherence messages

One ``redis.asyncio`` client (with its own connection pool) is kept per running
event loop, created on first use in that loop: the tiered cache calls a tier from
the user's loop and from its private loop thread, and an asyncio connection must
only be used from the loop that opened it. Nothing connects at construction.

Redis Cluster (``redis+cluster://``) is meant to slot in without changing callers:
clients are built in one place (:meth:`RedisTier._new_client`), pipelines are
never transactional, and the only script that touches several keys (tag removal)
sits behind :meth:`RedisTier._remove_tag`; every other script touches one key.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from time import perf_counter
from typing import Any, ClassVar, cast
from urllib.parse import urlsplit

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from hotpath._clock import Clock, SystemClock
from hotpath._errors import CodecError, ConfigError, InvalidKeyError, InvalidTTLError
from hotpath.cache._codec import Codec
from hotpath.cache._health import Health
from hotpath.cache._record import Record
from hotpath.cache._redis_events import Subscriber
from hotpath.cache._redis_scripts import EXTEND, TAG_ADD, TAG_REMOVE, UNLOCK
from hotpath.cache._redis_url import OWN_PARAMS, PASS_PARAMS, SCHEMES, redact, split_url
from hotpath.cache._stats import TierCounters, TierStats
from hotpath.cache._tier import WriteItem
from hotpath.cache._urls import parse_query
from hotpath.cache._validate import check_count, check_key, check_positive, check_ttl
from hotpath.cache._values import AsyncValueTier
from hotpath.cache._watchdog import Watchdog

__all__ = ["RedisTier"]

log = logging.getLogger("hotpath.cache")

_MAX_HOT = 100_000  # access counts kept in {prefix}h (the top ones)
_TRIM_EVERY = 1_000  # counts added between two trims of {prefix}h
_SCRIPT_BATCH = 1_000  # members per script call (Lua's unpack() has a stack limit)
_SCAN_COUNT = 1_000

#: The default of a guarded call that faulted (distinct from any Redis answer).
_FAILED: Any = object()

#: A loop's client, the gate that bounds its concurrent calls to the pool's size, and
#: the watchdog that holds each call to its deadline.
_Conn = tuple[Redis, asyncio.Semaphore, Watchdog]


class RedisTier(AsyncValueTier):
    """A shared L2 tier in Redis.

    ``url``: ``redis://[user:password@]host:port/db``, ``rediss://...`` (TLS) or
    ``unix:///path/to/redis.sock?db=0``. ``prefix`` namespaces every key this tier
    writes; two tiers with different prefixes never see each other's entries (a
    prefix should not itself be a prefix of another tier's, or ``clear`` reaches it).

    Each call to Redis (waiting for a free connection, connecting if need be, the
    command and its reply) is abandoned once ``timeout + connect_timeout`` seconds
    have passed (checked four times per such period, so it may run a quarter over);
    each connection attempt alone is bounded by ``connect_timeout``.
    A fault (Redis down, slow, or answering errors) never raises: the call answers a
    miss or does nothing, the fault is counted and logged, and Redis is left alone
    for a backoff of ``base_backoff`` seconds, doubling up to ``max_backoff``.
    """

    name: ClassVar[str] = "redis"

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "hp:",
        codec: Codec | None = None,
        clock: Clock | None = None,
        timeout: float = 0.25,
        connect_timeout: float = 0.25,
        max_connections: int = 64,
        base_backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        if not isinstance(url, str):
            raise ConfigError(f"url must be a str, got {type(url).__name__} {url!r}")
        shown = redact(url)
        scheme = urlsplit(url).scheme.lower()
        if scheme not in SCHEMES:
            raise ConfigError(
                f"RedisTier URL must start with redis://, rediss:// or unix://, got {shown!r}"
            )
        for param in parse_query(shown, {*PASS_PARAMS, *OWN_PARAMS}):
            if param in OWN_PARAMS:
                raise ConfigError(
                    f"parameter {param!r} in {shown!r}: pass {param}= as an argument, "
                    "or build the tier with RedisTier.from_url"
                )
        if not isinstance(prefix, str) or not prefix:
            raise ConfigError(f"prefix must be a non-empty str, got {prefix!r}")
        try:
            raw = prefix.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(f"prefix must be encodable as UTF-8, got {prefix!r}") from None
        if codec is not None and not isinstance(codec, Codec):
            raise ConfigError(f"codec must be a Codec, got {type(codec).__name__} {codec!r}")
        self._url = url
        self._shown_url = shown
        self._prefix = prefix
        self._timeout = check_positive(timeout, "timeout")
        self._connect_timeout = check_positive(connect_timeout, "connect_timeout")
        self._max_connections = check_count(max_connections, "max_connections")
        self._deadline = self._timeout + self._connect_timeout
        self._codec = codec or Codec()
        self._clock: Clock = clock or SystemClock()
        self._health = Health(
            self.name, self._clock, base_backoff=base_backoff, max_backoff=max_backoff
        )
        self._counters = TierCounters()

        self._vprefix = raw + b"v:"
        self._tprefix = raw + b"t:"
        self._lprefix = raw + b"l:"
        self._hkey = raw + b"h"
        self._channel = raw + b"events"
        self._hits_since_trim = 0

        # One client per running loop. ``_last`` is a (loop, conn) pair assigned as one
        # object, so two threads racing on it can never pair a loop with another's.
        self._clients: dict[asyncio.AbstractEventLoop, _Conn] = {}
        self._last: tuple[asyncio.AbstractEventLoop | None, _Conn | None] = (None, None)
        self._closed = False
        self._closing: list[concurrent.futures.Future[None]] = []  # closes sent to other loops

        self._subscriber: Subscriber | None = None

    # -- construction -----------------------------------------------------------

    @classmethod
    def from_url(
        cls, url: str, *, clock: Clock | None = None, codec: Codec | None = None
    ) -> RedisTier:
        """Build a tier from a URL with optional ``prefix``, ``timeout``,
        ``connect_timeout`` and ``max_connections`` query parameters, e.g.
        ``redis://cache:6379/0?prefix=myapp:&timeout=0.1``.
        """
        if not isinstance(url, str):
            raise ConfigError(f"tier URL must be a str, got {type(url).__name__} {url!r}")
        conn_url, kwargs = split_url(url)
        return cls(conn_url, clock=clock, codec=codec, **kwargs)

    def __repr__(self) -> str:
        return (
            f"RedisTier({self._shown_url!r}, prefix={self._prefix!r}, timeout={self._timeout!r}, "
            f"connect_timeout={self._connect_timeout!r}, max_connections={self._max_connections!r})"
        )

    @property
    def url(self) -> str:
        """The connection URL, with any password replaced by ``***``."""
        return self._shown_url

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def timeout(self) -> float:
        return self._timeout

    @property
    def connect_timeout(self) -> float:
        return self._connect_timeout

    @property
    def max_connections(self) -> int:
        return self._max_connections

    def _new_client(self, *, max_connections: int, retries: int) -> Redis:
        """The one place a Redis client is built (``redis+cluster://`` will branch here).

        One retry, only on a connection error: after a Redis restart the first call
        on a pooled connection finds it dead and should reconnect, not fail.

        No per-read ``socket_timeout``: every call already runs under one deadline
        (the loop's :class:`Watchdog`), and redis-py's own costs a task and a timer
        per read and per write (a raw GET measured 68 us with it, 41 us without). A
        call cut off by the deadline makes redis-py drop that connection, so a
        half-read reply is never handed to the next caller.
        """
        pool = ConnectionPool.from_url(
            self._url,
            max_connections=max_connections,
            socket_timeout=None,
            socket_connect_timeout=self._connect_timeout,
            retry=Retry(NoBackoff(), retries, supported_errors=(RedisConnectionError,)),
        )
        return Redis.from_pool(pool)

    def _client(self) -> _Conn:
        """This loop's client, gate and watchdog, created on first use.

        The gate (a FIFO semaphore as wide as the pool) queues callers when every
        connection is busy: a burst waits its turn, within the deadline, instead of
        failing with "too many connections" and marking the tier unhealthy; and being
        fair, a write queued behind reads is not served before them.
        """
        loop = asyncio.get_running_loop()
        last_loop, last = self._last
        if last_loop is loop and last is not None:
            return last
        conn = self._clients.get(loop)
        if conn is None:
            if self._closed:
                raise RuntimeError("the RedisTier is closed")
            # Forget clients of loops that were closed without release_loop(): their
            # connections can no longer be closed politely.
            for old in [lp for lp in list(self._clients) if lp.is_closed()]:
                self._clients.pop(old, None)
            client = self._new_client(max_connections=self._max_connections, retries=1)
            gate = asyncio.Semaphore(self._max_connections)
            dog = Watchdog(loop, self._deadline, period=max(0.01, self._deadline / 4))
            conn = self._clients[loop] = (client, gate, dog)
        self._last = (loop, conn)
        return conn

    # -- faults -------------------------------------------------------------------

    def _fault(self, exc: BaseException, op: str) -> None:
        self._counters.errors += 1
        self._health.fail(exc, op)

    async def _guarded(self, op: str, call: Callable[[Redis], Any], default: Any) -> Any:
        """``await call(client)``: one round trip under this loop's deadline and pool gate.

        While the tier is bypassed after a fault, or when this call faults (counted,
        logged once, tier marked unhealthy), the answer is ``default``: a backend
        fault never reaches the caller.
        """
        if not self._health.ready():
            return default
        latency = self._counters.latency
        t0 = perf_counter()
        try:
            client, gate, dog = self._client()
            with dog:
                async with gate:
                    out = await call(client)
        except Exception as exc:  # noqa: BLE001 - any backend fault answers the default
            latency.record(perf_counter() - t0)
            self._fault(exc, op)
            return default
        latency.record(perf_counter() - t0)
        self._health.ok()
        return out

    def _vkey(self, key: str) -> bytes:
        return self._vprefix + _utf8(key, "key")

    # -- Tier -----------------------------------------------------------------------

    async def read(self, key: str) -> Record | None:
        vkey = self._vkey(key)
        data = await self._guarded("read", lambda client: client.get(vkey), _FAILED)
        return self._decode(key, None if data is _FAILED else data)

    async def read_many(self, keys: Sequence[str]) -> list[Record | None]:
        if not keys:
            return []
        vkeys = [self._vkey(k) for k in keys]
        values = await self._guarded("read_many", lambda client: client.mget(vkeys), None)
        if values is None:
            values = [None] * len(keys)
        return [self._decode(k, v) for k, v in zip(keys, values, strict=True)]

    def _decode(self, key: str, data: Any) -> Record | None:
        counters = self._counters
        if data is None:
            counters.misses += 1
            return None
        record = self._codec.decode(data, key)
        if record is None:
            counters.misses += 1
            return None
        if record.expires_at is not None and record.expires_at <= self._clock.now():
            # Redis expires by its own clock; this catches an injected clock running ahead.
            counters.expirations += 1
            counters.misses += 1
            return None
        counters.hits += 1
        return record

    async def write_many(self, items: Sequence[WriteItem], *, only_missing: bool = False) -> None:
        if not items:
            return
        # Encode everything first: bad input raises before anything reaches Redis.
        now = self._clock.now()
        encode = self._codec.encode
        sets: list[tuple[bytes, bytes, int | None]] = []
        gone: list[bytes] = []
        tagged: dict[bytes, tuple[list[bytes], int]] = {}  # tag key -> (members, ttl ms; 0 = none)
        for key, record, tags in items:
            vkey = self._vkey(key)
            px: int | None = None
            if record.expires_at is not None:
                remaining = record.expires_at - now
                if remaining <= 0:
                    if not only_missing:
                        gone.append(vkey)  # not stored; must not leave an older value behind
                    continue
                px = max(1, math.ceil(remaining * 1000))
            sets.append((vkey, encode(record), px))
            if tags:
                member = vkey[len(self._vprefix) :]
                for tag in tags:
                    tkey = self._tprefix + _utf8(tag)
                    members, ms = tagged.get(tkey, ([], -1))
                    members.append(member)
                    tagged[tkey] = (members, 0 if px is None or ms == 0 else max(ms, px))

        async def write(client: Redis) -> bool:
            if len(sets) == 1 and not gone and not tagged:
                vkey, blob, px = sets[0]
                await client.set(vkey, blob, px=px, nx=only_missing)
                return True
            pipe = client.pipeline(transaction=False)
            for vkey, blob, px in sets:
                pipe.set(vkey, blob, px=px, nx=only_missing)
            if gone:
                pipe.unlink(*gone)
            for tkey, (members, ms) in tagged.items():
                for i in range(0, len(members), _SCRIPT_BATCH):
                    pipe.eval(TAG_ADD, 1, tkey, ms, *members[i : i + _SCRIPT_BATCH])
            await pipe.execute()
            return True

        if await self._guarded("write_many", write, False):
            self._counters.sets += len(sets)

    async def remove_many(self, keys: Sequence[str]) -> None:
        await self._unlink([self._vkey(k) for k in keys])

    async def _unlink(self, vkeys: list[bytes]) -> int:
        """UNLINK value keys; how many existed (0 when Redis is unavailable)."""
        if not vkeys:
            return 0
        removed = int(await self._guarded("remove_many", lambda c: c.unlink(*vkeys), 0))
        self._counters.deletes += removed
        return removed

    async def remove_tags(self, tags: Sequence[str]) -> None:
        tkeys = list(dict.fromkeys(self._tprefix + _utf8(t) for t in tags))
        if tkeys:
            removed = await self._guarded("remove_tags", lambda c: self._remove_tag(c, tkeys), 0)
            self._counters.deletes += removed

    async def _remove_tag(self, client: Redis, tkeys: list[bytes]) -> int:
        """Remove each tag's entries and set, atomically per tag; how many entries went.

        The seam for Redis Cluster: there a tag's values live on many slots, so one
        script cannot reach them. The cluster version will drain the set with
        ``SPOP key 500`` (the set's own slot) and UNLINK each popped batch grouped by
        slot; a key tagged concurrently lands either in a popped batch (removed) or in
        the set after the drain (its tag link kept), so no entry escapes a later removal.
        """
        pipe = client.pipeline(transaction=False)
        for tkey in tkeys:
            pipe.eval(TAG_REMOVE, 1, tkey, self._vprefix)
        return sum(int(n) for n in await pipe.execute())

    async def clear(self) -> None:
        """Remove every value, tag set and access count under this tier's prefix.

        Locks are left alone: they belong to loads in flight, not to the data.
        """
        pattern = _glob_escape(self._prefix).encode("utf-8") + b"*"
        lprefix = self._lprefix
        cursor = 0
        while True:
            # One round trip at a time, each with its own deadline: a big keyspace
            # takes many. A fault stops the clear.
            page = await self._guarded("clear", partial(_scan, cursor=cursor, match=pattern), None)
            if page is None:
                return
            cursor, found = page
            doomed = [k for k in cast("list[bytes]", found) if not k.startswith(lprefix)]
            if doomed:
                removed = await self._guarded("clear", partial(_unlink, keys=doomed), None)
                if removed is None:
                    return
                self._counters.deletes += int(removed)
            if cursor == 0:
                break
        self._hits_since_trim = 0

    async def add_hits(self, counts: Mapping[str, int]) -> None:
        members = [(self._vkey(k)[len(self._vprefix) :], n) for k, n in counts.items() if n > 0]
        if not members:
            return

        async def add(client: Redis) -> None:
            pipe = client.pipeline(transaction=False)
            for member, n in members:
                pipe.zincrby(self._hkey, n, member)
            self._hits_since_trim += len(members)
            if self._hits_since_trim >= _TRIM_EVERY:
                # Keep only the top _MAX_HOT counts: ranks 0..len-_MAX_HOT-1 go.
                pipe.zremrangebyrank(self._hkey, 0, -(_MAX_HOT + 1))
                self._hits_since_trim = 0
            await pipe.execute()

        await self._guarded("add_hits", add, None)  # a fault drops the counts

    async def hottest(self, n: int) -> list[str]:
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, got {type(n).__name__} {n!r}")
        if n <= 0:
            return []
        page = min(max(2 * n, 32), 1_000)
        live: list[str] = []
        dead: list[bytes] = []
        start = 0

        async def exist(client: Redis, members: list[bytes]) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for member in members:
                pipe.exists(self._vprefix + member)
            return await pipe.execute()

        while len(live) < n:
            ranked = await self._guarded(
                "hottest",
                partial(_ranked, key=self._hkey, start=start, stop=start + page - 1),
                None,
            )
            if ranked is None:
                return []  # a fault answers "nothing is hot"
            members = cast("list[bytes]", ranked)
            if not members:
                break
            exists = await self._guarded("hottest", partial(exist, members=members), None)
            if exists is None:
                return []
            for member, found in zip(members, exists, strict=True):
                if not found:
                    dead.append(member)
                elif len(live) < n:
                    live.append(member.decode("utf-8", "replace"))
            start += page
        if dead:  # keys whose value is gone take their counts with them
            await self._guarded("hottest", lambda c: c.zrem(self._hkey, *dead), None)
        return live

    def stats(self) -> TierStats:
        return self._counters.snapshot(
            self.name, healthy=self._health.healthy, entries=-1, nbytes=-1
        )

    @property
    def healthy(self) -> bool:
        return self._health.healthy

    async def release_loop(self) -> None:
        """Close the connections this tier holds for the running loop.

        Call it before closing an event loop that used the tier (other than the one
        :meth:`aclose` runs in); the tier stays usable from other loops.
        """
        conn = self._clients.pop(asyncio.get_running_loop(), None)
        self._last = (None, None)
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn[0].aclose()

    async def aclose(self) -> None:
        """Stop the subscriber and close every client that can still be closed.

        The running loop's client is closed before this returns; those of other
        running loops are closed soon after, in their own loops.
        """
        self._closed = True
        await self.unsubscribe()
        current = asyncio.get_running_loop()
        clients, self._clients = self._clients, {}
        self._last = (None, None)
        for loop, (client, _, _) in clients.items():
            if loop is current:
                with contextlib.suppress(Exception):
                    await client.aclose()
            elif loop.is_running():
                # Schedule the close there without waiting: that loop may be blocked
                # waiting for us (a sync caller closing the cache through a portal).
                with contextlib.suppress(RuntimeError):
                    self._closing.append(asyncio.run_coroutine_threadsafe(client.aclose(), loop))

    # -- convenience API ----------------------------------------------------------------

    async def delete(self, key: str | bytes) -> bool:
        """Remove ``key``; whether it was there (False too when Redis is unavailable)."""
        return await self._unlink([self._vkey(check_key(key))]) > 0

    # -- coordination (used by the tiered cache) -----------------------------------------

    async def try_lock(self, name: str, token: str, lease: float) -> bool | None:
        """Take lock ``name`` for ``lease`` seconds if it is free.

        True if taken, False if someone else holds it, None if Redis is unavailable.
        """
        lkey = self._lprefix + _utf8(check_key(name, "name"), "name")
        seconds = check_ttl(lease, "lease")
        if seconds is None:
            raise InvalidTTLError("lease must be a positive, finite number of seconds, got None")
        px = max(1, math.ceil(seconds * 1000))
        tok = check_key(token, "token")
        taken = await self._guarded("try_lock", lambda c: c.set(lkey, tok, nx=True, px=px), _FAILED)
        return None if taken is _FAILED else bool(taken)

    async def extend_lock(self, name: str, token: str, lease: float) -> bool | None:
        """Renew lock ``name`` for ``lease`` seconds from now if ``token`` still holds it.

        True if renewed, False if the lock is gone or held by another token, None if
        Redis is unavailable.
        """
        lkey = self._lprefix + _utf8(check_key(name, "name"), "name")
        seconds = check_ttl(lease, "lease")
        if seconds is None:
            raise InvalidTTLError("lease must be a positive, finite number of seconds, got None")
        tok = check_key(token, "token")
        px = max(1, math.ceil(seconds * 1000))
        renewed = await self._guarded(
            "extend_lock", lambda c: c.eval(EXTEND, 1, lkey, tok, px), _FAILED
        )
        return None if renewed is _FAILED else bool(renewed)

    async def unlock(self, name: str, token: str) -> None:
        """Release lock ``name`` if ``token`` still holds it (else, or on a fault, do nothing)."""
        lkey = self._lprefix + _utf8(check_key(name, "name"), "name")
        tok = check_key(token, "token")
        # On a fault the lease simply runs out.
        await self._guarded("unlock", lambda c: c.eval(UNLOCK, 1, lkey, tok), None)

    async def is_locked(self, name: str) -> bool | None:
        """Whether lock ``name`` is held; None if Redis is unavailable."""
        lkey = self._lprefix + _utf8(check_key(name, "name"), "name")
        held = await self._guarded("is_locked", lambda c: c.exists(lkey), _FAILED)
        return None if held is _FAILED else bool(held)

    async def publish(self, payload: bytes) -> bool:
        """Send ``payload`` to every subscriber; False if Redis is unavailable."""
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise CodecError(f"payload must be bytes, got {type(payload).__name__} {payload!r}")
        data = bytes(payload)

        async def publish(client: Redis) -> bool:
            await client.publish(self._channel, data)
            return True

        return bool(await self._guarded("publish", publish, False))

    def subscribe(self, on_message: Callable[[bytes], None], on_reset: Callable[[], None]) -> None:
        """Listen to the events channel in a background task of the running loop.

        ``on_message(payload)`` is called for each message. The task reconnects
        forever when the connection drops; after each re-subscription it calls
        ``on_reset()``, since messages sent meanwhile were lost. Calling it again
        replaces the handlers (and restarts the task if it had stopped).
        """
        if not callable(on_message) or not callable(on_reset):
            raise ConfigError("subscribe needs two callables: on_message(payload) and on_reset()")
        sub = self._subscriber
        if sub is None:
            sub = self._subscriber = Subscriber(
                lambda: self._new_client(max_connections=1, retries=0),
                self._channel,
                self._deadline,
                on_message,
                on_reset,
            )
        sub.on_message, sub.on_reset = on_message, on_reset
        sub.start()

    async def wait_subscribed(self, timeout: float) -> bool:  # noqa: ASYNC109 - a bool, not a raise
        """Wait until the subscription is live; False if it is not within ``timeout`` s."""
        sub = self._subscriber
        return sub is not None and await sub.wait_ready(timeout)

    async def unsubscribe(self) -> None:
        """Stop listening (no-op if not subscribed)."""
        sub, self._subscriber = self._subscriber, None
        if sub is not None:
            await sub.stop()


def _utf8(text: str, what: str = "tag") -> bytes:
    try:
        return text.encode("utf-8")
    except (AttributeError, UnicodeEncodeError):
        raise InvalidKeyError(f"{what} must be a str encodable as UTF-8, got {text!r}") from None


def _glob_escape(text: str) -> str:
    """``text`` with Redis glob metacharacters escaped, for SCAN MATCH."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


# Single round trips with their arguments bound (functools.partial), for loops.
async def _scan(client: Redis, *, cursor: int, match: bytes) -> Any:
    return await client.scan(cursor, match=match, count=_SCAN_COUNT)


async def _unlink(client: Redis, *, keys: list[bytes]) -> Any:
    return await client.unlink(*keys)


async def _ranked(client: Redis, *, key: bytes, start: int, stop: int) -> Any:
    return await client.zrevrange(key, start, stop)
