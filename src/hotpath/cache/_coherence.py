"""Messages that keep the L1 of every process sharing a Redis coherent.

A process that sets, deletes or invalidates publishes one small msgpack message
on the Redis tier's events channel; every other process drops the named entries
from its L1. Messages carry the sender's id so a process ignores its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgpack

if TYPE_CHECKING:
    from hotpath.cache._memory import MemoryTier
    from hotpath.cache._redis import RedisTier

__all__ = ["Coherence", "Invalidation", "decode_message", "encode_message"]

log = logging.getLogger("hotpath.cache")


@dataclass(frozen=True, slots=True)
class Invalidation:
    """Drop ``keys``, every entry tagged with one of ``tags``, or everything (``clear``)."""

    origin: str
    keys: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    clear: bool = False


def encode_message(msg: Invalidation) -> bytes:
    body: dict[str, object] = {"o": msg.origin}
    if msg.keys:
        body["k"] = list(msg.keys)
    if msg.tags:
        body["t"] = list(msg.tags)
    if msg.clear:
        body["c"] = 1
    return msgpack.packb(body, use_bin_type=True)


def decode_message(payload: bytes) -> Invalidation | None:
    """The message in ``payload``, or ``None`` (logged) if it is not one of ours."""
    try:
        body = msgpack.unpackb(payload, raw=False)
        if not isinstance(body, dict) or not isinstance(body.get("o"), str):
            raise ValueError("not an invalidation message")
        keys = body.get("k", [])
        tags = body.get("t", [])
        if not isinstance(keys, list) or not isinstance(tags, list):
            raise ValueError("keys and tags must be lists")
        if not all(isinstance(k, str) for k in keys + tags):
            raise ValueError("keys and tags must be str")
        return Invalidation(body["o"], tuple(keys), tuple(tags), bool(body.get("c")))
    except Exception as exc:  # noqa: BLE001 - a foreign message must not kill the listener
        log.warning("ignoring an unreadable cache invalidation message: %s", exc)
        return None


class Coherence:
    """One process's side of the invalidation channel.

    Publishes this process's writes, applies other processes' messages to the
    local L1 (if any), flushes L1 when the subscription had to reconnect, and
    wakes tasks waiting for another replica to store a key.
    """

    def __init__(
        self,
        redis: RedisTier,
        l1: MemoryTier | None,
        *,
        on_keys: Callable[[tuple[str, ...]], None] | None = None,
    ) -> None:
        self.origin = uuid.uuid4().hex
        self.received = 0
        #: Bumped by every message and every reconnect: a read that started at another
        #: epoch may hold a value L1 has since dropped, and must not be put into L1.
        self.epoch = 0
        self._redis = redis
        self._l1 = l1
        self._on_keys = on_keys
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._closed = False

    def ensure_subscribed(self) -> None:
        """Listen in the running loop, unless already listening in a live loop."""
        if self._closed or (self._loop is not None and not self._loop.is_closed()):
            return
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._redis.subscribe(self._on_message, self._on_reset)

    async def wait_subscribed(self, limit: float) -> bool:
        """Subscribe if needed; True once the subscription is live (within ``limit`` s)."""
        self.ensure_subscribed()
        return await self._redis.wait_subscribed(limit)

    async def publish(
        self, *, keys: tuple[str, ...] = (), tags: tuple[str, ...] = (), clear: bool = False
    ) -> None:
        self.ensure_subscribed()
        msg = Invalidation(self.origin, keys, tags, clear)
        await self._redis.publish(encode_message(msg))

    def watch(self, key: str) -> asyncio.Future[None]:
        """A future resolved when another process publishes a write of ``key``."""
        self.ensure_subscribed()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(fut)
        return fut

    def unwatch(self, key: str, fut: asyncio.Future[None]) -> None:
        waiters = self._waiters.get(key)
        if waiters is None:
            return
        with contextlib.suppress(ValueError):
            waiters.remove(fut)
        if not waiters:
            del self._waiters[key]

    async def aclose(self) -> None:
        self._closed = True
        if self._loop is not None:
            await self._redis.unsubscribe()

    def _on_message(self, payload: bytes) -> None:
        msg = decode_message(payload)
        if msg is None or msg.origin == self.origin:
            return
        self.received += 1
        self.epoch += 1
        l1 = self._l1
        if l1 is not None:
            if msg.clear:
                l1.clear_sync()
            if msg.keys:
                l1.remove_keys(msg.keys)
            if msg.tags:
                l1.remove_tags_sync(msg.tags)
        for k in msg.keys:
            for fut in list(self._waiters.get(k, ())):
                # the listener may run in another loop than the waiter's
                fut.get_loop().call_soon_threadsafe(_wake, fut)
        if self._on_keys is not None and msg.keys:
            self._on_keys(msg.keys)

    def _on_reset(self) -> None:
        # The subscription dropped and came back: messages may have been missed.
        self.epoch += 1
        if self._l1 is not None:
            log.warning("cache invalidation channel reconnected; flushing L1 to stay coherent")
            self._l1.clear_sync()


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
