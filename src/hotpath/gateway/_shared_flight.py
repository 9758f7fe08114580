"""Single-flight across processes and replicas, through Redis.

Within a process, identical requests share one :class:`~hotpath.gateway._flight.Flight`.
Across processes, the flights of one key elect a leader with a lease
(``SET key:fl token NX PX``, renewed while the call runs). The leader calls the
upstream and appends what it gets to a Redis stream (``XADD key:fs``): each chunk as
it arrives, then an end entry (``ok`` with the whole body for non-streamed
answers, ``error`` with the status and body, or ``cancelled``). Followers in other
processes read that stream live (``XREAD BLOCK``) into their own local flight, so
their clients get the chunks as they come.

If the leader goes away (its lease lapses with no end entry) or its clients all
left (``cancelled``), a follower takes the lease and calls the upstream itself:
no request is lost, at the price of a second call in that rare case. If Redis
fails, each process calls the upstream on its own (and says so in the log).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hotpath.cache._redis_url import split_url
from hotpath.gateway._answers import Answer
from hotpath.gateway._api_errors import ApiError, upstream_api_error
from hotpath.gateway._flight import Flight, FlightFailedError

__all__ = ["SharedFlights"]

log = logging.getLogger("hotpath.gateway")

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


# XREAD's answer: [(stream, [(entry id, {field: value})])]
_Entries = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]


class _TakeOverError(Exception):
    """The leader went away without an answer: take over."""


class SharedFlights:
    """Leader election and chunk relay for flights, over one Redis."""

    def __init__(
        self,
        url: str,
        *,
        lease: float = 10.0,
        poll: float = 1.0,
        stream_ttl: float = 60.0,
        backoff: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # The URL is a cache tier's: hotpath's own options (prefix, timeouts) come off.
        self._url, options = split_url(url)
        self._prefix = str(options.get("prefix", ""))
        self._connect_timeout = float(options.get("connect_timeout", 1.0))
        self._lease_ms = int(lease * 1000)
        self._poll = poll
        self._poll_ms = int(poll * 1000)
        self._stream_ttl = int(stream_ttl)
        self._backoff = backoff
        self._clock = clock
        self._down_until = 0.0
        self._clients: dict[asyncio.AbstractEventLoop, aioredis.Redis] = {}
        self.led = 0
        self.followed = 0
        self.takeovers = 0
        self.failures = 0

    def _client(self) -> aioredis.Redis:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            # A blocked XREAD waits ``poll``; anything slower than that plus a second
            # is a fault, and the flight goes on without Redis.
            client = aioredis.Redis.from_url(
                self._url,
                socket_timeout=self._poll + 1.0,
                socket_connect_timeout=self._connect_timeout,
            )
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    async def run(self, flight: Flight, call: Callable[[Flight], Awaitable[None]]) -> None:
        """Fill ``flight``: as the leader (``call`` runs and is relayed to Redis) or as a
        follower of another process's leader."""
        key = flight.key
        assert key is not None
        if self._clock() < self._down_until:
            await call(flight)
            return
        lock, stream = f"{self._prefix}{key}:fl", f"{self._prefix}{key}:fs"
        token = uuid.uuid4().hex
        client = self._client()
        for _ in range(3):
            try:
                leader = await client.set(lock, token, nx=True, px=self._lease_ms)
                if leader:
                    await client.delete(stream)
                else:
                    self.followed += 1
                    await self._follow(client, lock, stream, flight)
                    return
            except _TakeOverError:
                self.takeovers += 1
                continue
            except RedisError as exc:
                self.failures += 1
                self._down_until = self._clock() + self._backoff
                log.warning(
                    "single-flight over Redis failed (%s): calling alone for %.0f s",
                    exc,
                    self._backoff,
                )
                if flight.chunks:
                    # Our clients already have part of another process's answer.
                    flight.fail(
                        ApiError(502, "lost the shared upstream call", type="upstream_error")
                    )
                    return
                await call(flight)
                return
            self.led += 1
            await self._lead(client, lock, stream, token, flight, call)
            return
        log.warning("no single-flight leader for %s after 3 tries: calling alone", key)
        await call(flight)

    async def _lead(
        self,
        client: aioredis.Redis,
        lock: str,
        stream: str,
        token: str,
        flight: Flight,
        call: Callable[[Flight], Awaitable[None]],
    ) -> None:
        loop = asyncio.get_running_loop()
        relay = loop.create_task(self._relay(client, stream, flight))
        renew = loop.create_task(self._renew(client, lock, token))
        try:
            await call(flight)
        finally:
            renew.cancel()
            if not flight.done:
                flight.fail(asyncio.CancelledError("the upstream call was cancelled"))
            with contextlib.suppress(RedisError, asyncio.CancelledError):
                await asyncio.shield(relay)
            with contextlib.suppress(RedisError):
                await asyncio.shield(client.eval(_RELEASE, 1, lock, token))

    async def _renew(self, client: aioredis.Redis, lock: str, token: str) -> None:
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            with contextlib.suppress(RedisError):
                if await client.get(lock) == token.encode():
                    await client.pexpire(lock, self._lease_ms)

    async def _relay(self, client: aioredis.Redis, stream: str, flight: Flight) -> None:
        """Append the flight's chunks to the stream as they come, then its end."""
        sent = 0
        end: dict[Any, Any]
        try:
            async for _payload, _usage in flight.payloads():
                chunks = flight.chunks[sent:]
                if chunks:
                    async with client.pipeline(transaction=False) as pipe:
                        for i, chunk in enumerate(chunks, sent):
                            pipe.xadd(
                                stream, {"c": chunk, "u": b"1" if i == flight.usage_index else b"0"}
                            )
                        await pipe.execute()
                    sent += len(chunks)
            answer = flight.answer
            assert answer is not None
            end = {"end": "ok", "k": answer.kind, "b": answer.body}
        except FlightFailedError as failed:
            error = failed.error
            if isinstance(error, asyncio.CancelledError):
                end = {"end": "cancelled"}
            else:
                api = upstream_api_error(error)
                end = {"end": "error", "s": str(api.status), "b": api.body()}
        async with client.pipeline(transaction=False) as pipe:
            pipe.xadd(stream, end)
            pipe.expire(stream, self._stream_ttl)
            await pipe.execute()

    async def _follow(self, client: aioredis.Redis, lock: str, stream: str, flight: Flight) -> None:
        last = b"0-0"
        while True:
            found = cast(
                _Entries, await client.xread({stream: last}, count=512, block=self._poll_ms)
            )
            if not found:
                if await client.exists(lock):
                    continue
                # Re-read once: the end may have landed just before the lock went.
                found = cast(_Entries, await client.xread({stream: last}, count=512))
                if not found:
                    raise _TakeOverError
            for entry_id, fields in found[0][1]:
                last = entry_id
                if b"end" not in fields:
                    flight.push(fields[b"c"], usage=fields.get(b"u") == b"1")
                    continue
                outcome = fields[b"end"]
                if outcome == b"ok":
                    if fields.get(b"k") == b"json":
                        flight.finish(Answer("json", 0.0, body=fields[b"b"]))
                    else:
                        flight.finish(
                            Answer(
                                "sse",
                                0.0,
                                chunks=tuple(flight.chunks),
                                usage_index=flight.usage_index,
                            )
                        )
                    return
                if outcome == b"error":
                    error = ApiError(int(fields[b"s"]), "upstream error (shared call)")
                    error.raw_body = fields[b"b"]
                    flight.fail(error)
                    return
                if flight.chunks:
                    # Our clients already got part of the answer: it cannot restart.
                    flight.fail(
                        ApiError(
                            502, "the shared upstream call was cancelled", type="upstream_error"
                        )
                    )
                    return
                raise _TakeOverError
