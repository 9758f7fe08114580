"""A failing tier degrades the cache; it never raises to callers or hangs them."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from hotpath import ManualClock, MemoryTier, TieredCache
from redis_server import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
async def cache(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[TieredCache]:
    c = TieredCache(
        [
            "memory://",
            f"{redis_server.url}?prefix=t:&timeout=0.2",
            f"sqlite:///{tmp_path / 'c.db'}",
        ],
        clock=ManualClock(start=time.time()),
    )
    await c.start()
    yield c
    await c.aclose()


async def test_redis_down_calls_carry_on_through_other_tiers(
    cache: TieredCache, redis_server: RedisServer
) -> None:
    await cache.set("before", 1)
    redis_server.stop()
    started = time.perf_counter()
    await cache.set("during", 2)
    assert await cache.get("before") == 1  # L1
    l1 = cache.tiers[0]
    assert isinstance(l1, MemoryTier)
    l1.clear_sync()
    assert await cache.get("during") == 2  # from SQLite, Redis skipped

    async def loader() -> int:
        return 3

    assert await cache.get_or_load("loaded", loader) == 3
    assert time.perf_counter() - started < 2.0
    redis_stats = cache.stats().tier("redis")
    assert redis_stats.healthy is False
    assert redis_stats.errors >= 1


async def test_redis_recovers_after_restart(cache: TieredCache, redis_server: RedisServer) -> None:
    redis_server.stop()
    await cache.set("k", 1)
    assert cache.stats().tier("redis").healthy is False
    redis_server.start()
    clock = cache._clock
    assert isinstance(clock, ManualClock)
    clock.advance(60)  # past the backoff
    await cache.set("k2", 2)
    assert cache.stats().tier("redis").healthy is True
    l1 = cache.tiers[0]
    assert isinstance(l1, MemoryTier)
    l1.clear_sync()
    assert await cache.get("k2") == 2
    assert cache.stats().tier("redis").hits >= 1


async def test_resubscription_after_redis_restart_flushes_l1(
    cache: TieredCache, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    await cache.set("k", 1)
    l1 = cache.tiers[0]
    assert isinstance(l1, MemoryTier)
    assert "k" in l1
    with caplog.at_level(logging.WARNING, logger="hotpath.cache"):
        redis_server.restart()
        for _ in range(400):
            if "k" not in l1:
                break
            await asyncio.sleep(0.01)
    assert "k" not in l1
    assert any("flushing L1" in r.getMessage() for r in caplog.records)


async def test_unwritable_sqlite_degrades(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = TieredCache(["memory://", f"sqlite:///{blocker / 'sub' / 'c.db'}"])
    try:
        await cache.set("k", 1)
        assert await cache.get("k") == 1
        assert cache.stats().tier("sqlite").healthy is False
    finally:
        await cache.aclose()


async def test_corrupt_sqlite_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "c.db"
    path.write_bytes(os.urandom(8192))
    with caplog.at_level(logging.ERROR, logger="hotpath.cache"):
        cache = TieredCache(["memory://", f"sqlite:///{path}"])
        try:
            await cache.set("k", 1)
            l1 = cache.tiers[0]
            assert isinstance(l1, MemoryTier)
            l1.clear_sync()
            assert await cache.get("k") == 1
        finally:
            await cache.aclose()
    assert any("corrupt" in r.getMessage().lower() for r in caplog.records)


async def test_slow_redis_is_bounded_and_served_from_sqlite(
    cache: TieredCache, redis_server: RedisServer
) -> None:
    await cache.set("k", "v")
    l1 = cache.tiers[0]
    assert isinstance(l1, MemoryTier)
    l1.clear_sync()

    # DEBUG SLEEP blocks the whole server for 1.5 s: a slow, not a dead, Redis.
    def block() -> None:
        client = redis.Redis(port=redis_server.port)
        try:
            client.execute_command("DEBUG", "SLEEP", "1.5")  # type: ignore[no-untyped-call]
        finally:
            client.close()

    blocker = threading.Thread(target=block)
    blocker.start()
    try:
        probe = redis.Redis(
            port=redis_server.port, socket_timeout=0.05, retry=Retry(NoBackoff(), 0)
        )
        try:
            deadline = time.monotonic() + 1.0
            while True:  # until a PING goes unanswered: the server is asleep
                try:
                    probe.ping()
                except redis.TimeoutError:
                    break
                if time.monotonic() > deadline:
                    pytest.fail("the server never went to sleep")
        finally:
            probe.close()
        started = time.perf_counter()
        assert await cache.get("k") == "v"  # Redis times out; SQLite answers
        assert time.perf_counter() - started < 1.0
        assert cache.stats().tier("redis").healthy is False
        assert cache.stats().tier("sqlite").hits == 1
    finally:
        blocker.join(10)
