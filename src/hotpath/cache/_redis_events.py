"""The background listener behind :meth:`RedisTier.subscribe`.

A dedicated pub/sub connection (not from the tier's pool) listens on one channel.
When it drops, the listener reconnects forever, waiting between attempts (with
jitter, capped at a couple of seconds, cancellable); once a re-subscription is
confirmed it calls ``on_reset()``, because messages published meanwhile are lost
and whoever relies on them (the L1 tier) must assume the worst.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["Subscriber"]

log = logging.getLogger("hotpath.cache")

_MIN_DELAY = 0.05  # first wait before re-subscribing after a drop
_MAX_DELAY = 2.0  # its cap: missing invalidations costs more than a reconnect attempt
_KEEPALIVE = 5.0  # an idle subscription is PINGed this often to notice a lost peer


class Subscriber:
    """Calls ``on_message(payload)`` for each message on ``channel``, in one event loop.

    ``connect()`` builds a fresh single-connection client for each attempt;
    ``deadline`` bounds connecting and subscribing. ``label`` names the user in
    log lines, which go to ``logger``.
    """

    def __init__(
        self,
        connect: Callable[[], Redis],
        channel: bytes,
        deadline: float,
        on_message: Callable[[bytes], None],
        on_reset: Callable[[], None],
        *,
        label: str = "cache tier redis",
        logger: logging.Logger = log,
    ) -> None:
        self._label = label
        self._log = logger
        self._connect = connect
        self._channel = channel
        self._deadline = deadline
        self.on_message = on_message
        self.on_reset = on_reset
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start listening in the running loop (no-op if already listening)."""
        if not self.running:
            self._ready = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(
                self._run(self._ready), name="hotpath-redis-events"
            )

    async def wait_ready(self, timeout: float) -> bool:  # noqa: ASYNC109 - answers, never raises
        """True once the subscription is confirmed; False if not within ``timeout`` s."""
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Stop listening and close the connection (waits if called from its own loop)."""
        task, self._task = self._task, None
        self._ready.clear()
        if task is None or task.done():
            return
        loop = task.get_loop()
        if loop is asyncio.get_running_loop():
            task.cancel()
            await asyncio.wait([task])
        elif not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)

    async def _run(self, ready: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        delay = _MIN_DELAY
        outage = False  # True from a failure until the next confirmed subscription
        while True:
            client = self._connect()
            pubsub = client.pubsub()
            try:
                await self._subscribe(pubsub)
                ready.set()
                delay = _MIN_DELAY
                if outage:
                    outage = False
                    self._log.warning("%s re-subscribed to %r", self._label, self._channel)
                    self._call(self.on_reset)
                await self._pump(pubsub, loop)
            except Exception as exc:  # noqa: BLE001 - any fault: wait, then reconnect
                ready.clear()
                self._log.log(
                    logging.DEBUG if outage else logging.WARNING,
                    "%s: subscription to %r failed (%s: %s); reconnecting",
                    self._label,
                    self._channel,
                    type(exc).__name__,
                    exc,
                )
                outage = True
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(delay * (0.5 + random.random()))  # jitter: no reconnect storms
            delay = min(delay * 2, _MAX_DELAY)

    async def _subscribe(self, pubsub: PubSub) -> None:
        """SUBSCRIBE and wait for Redis to confirm it (bounded)."""
        async with asyncio.timeout(self._deadline):
            await pubsub.subscribe(self._channel)
            while True:
                msg = await pubsub.get_message(timeout=self._deadline)
                if msg is not None and msg["type"] == "subscribe":
                    return

    async def _pump(self, pubsub: PubSub, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver messages until the connection fails (then raise)."""
        last_seen = loop.time()
        pinged_at: float | None = None
        while True:
            msg = await pubsub.get_message(timeout=_KEEPALIVE)
            now = loop.time()
            if msg is None:
                if pinged_at is not None:
                    if now - pinged_at > _KEEPALIVE:
                        raise RedisConnectionError("no answer to PING on the subscription")
                elif now - last_seen >= _KEEPALIVE:
                    # A silent TCP connection can be dead without any error (a lost peer).
                    async with asyncio.timeout(self._deadline):
                        await pubsub.ping()
                    pinged_at = now
                continue
            last_seen, pinged_at = now, None
            if msg["type"] == "message":
                self._call(self.on_message, msg["data"])

    @staticmethod
    def _call(handler: Callable[..., None], *args: object) -> None:
        try:
            handler(*args)
        except Exception:
            log.exception("cache tier redis: subscription handler %r failed", handler)
