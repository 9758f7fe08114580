"""Replicas sharing a Redis: L1 coherence and cross-replica single-flight."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path

import pytest
import redis
import redis.asyncio as aredis

from hotpath import MemoryTier, Record, RedisTier, SQLiteTier, Tier, TieredCache, TierStats
from hotpath.cache._tier import WriteItem

pytestmark = pytest.mark.redis

Replica = Callable[[], TieredCache]


@pytest.fixture
async def replica(redis_url: str, redis_prefix: str) -> AsyncIterator[Replica]:
    made: list[TieredCache] = []

    def build() -> TieredCache:
        cache = TieredCache(["memory://", f"{redis_url}?prefix={redis_prefix}"])
        made.append(cache)
        return cache

    yield build
    for cache in made:
        await cache.aclose()


def l1(cache: TieredCache) -> MemoryTier:
    tier = cache.tiers[0]
    assert isinstance(tier, MemoryTier)
    return tier


async def wait_until(cond: Callable[[], bool], limit: float = 2.0) -> float:
    """Seconds until ``cond()`` held; fails the test after ``timeout``."""
    start = time.perf_counter()
    while not cond():
        if time.perf_counter() - start > limit:
            pytest.fail(f"condition not met within {limit}s")
        await asyncio.sleep(0.0005)
    return time.perf_counter() - start


async def test_set_in_one_replica_evicts_stale_l1_in_another(replica: Replica) -> None:
    a, b = replica(), replica()
    await a.start()
    await b.start()
    await a.set("k", "old")
    assert await b.get("k") == "old"  # now in b's L1
    await a.set("k", "new")
    delay = await wait_until(lambda: "k" not in l1(b))
    assert delay < 1.0
    assert await b.get("k") == "new"
    assert b.stats().invalidations_received >= 1


async def test_delete_and_tag_invalidation_propagate(replica: Replica) -> None:
    a, b = replica(), replica()
    await a.start()
    await b.start()
    await a.set("x", 1, tags=["t"])
    await a.set("y", 2)
    assert await b.get_many(["x", "y"]) == [1, 2]
    await a.invalidate_tags(["t"])
    await a.delete("y")
    await wait_until(lambda: "x" not in l1(b) and "y" not in l1(b))
    assert await b.get_many(["x", "y"]) == [None, None]


async def test_clear_propagates(replica: Replica) -> None:
    a, b = replica(), replica()
    await a.start()
    await b.start()
    await a.set("x", 1)
    assert await b.get("x") == 1
    await a.clear()
    await wait_until(lambda: "x" not in l1(b))


async def test_replicas_share_one_load(replica: Replica) -> None:
    replicas = [replica() for _ in range(4)]
    for r in replicas:
        await r.start()
    calls = 0
    gate = asyncio.Event()

    async def loader() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        return "answer"

    tasks = [
        asyncio.create_task(r.get_or_load("shared", loader, ttl=60))
        for r in replicas
        for _ in range(25)
    ]
    # 24 callers join each replica's own load; 3 replicas wait on the lease of the 4th
    await wait_until(lambda: sum(r.stats().coalesced for r in replicas) >= 24 * 4 + 3)
    gate.set()
    assert await asyncio.gather(*tasks) == ["answer"] * 100
    assert calls == 1


async def test_waiting_replica_loads_itself_when_the_loader_replica_fails(
    replica: Replica,
) -> None:
    a, b = replica(), replica()
    await a.start()
    await b.start()
    gate = asyncio.Event()
    started = asyncio.Event()

    async def failing() -> str:
        started.set()
        await gate.wait()
        raise RuntimeError("boom")

    async def working() -> str:
        return "from-b"

    ta = asyncio.create_task(a.get_or_load("k", failing))
    await asyncio.wait_for(started.wait(), 5)  # a holds the lease
    tb = asyncio.create_task(b.get_or_load("k", working))
    await wait_until(lambda: b.stats().coalesced >= 1)  # b waits on a's lease
    gate.set()
    with pytest.raises(RuntimeError):
        await ta
    assert await asyncio.wait_for(tb, 5) == "from-b"


def test_processes_share_one_load(redis_url: str, redis_prefix: str, tmp_path: Path) -> None:
    """Separate OS processes, each with 20 concurrent callers: one load in all."""
    script = tmp_path / "replica.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio, sys
            import redis
            from hotpath import TieredCache

            async def main():
                cache = TieredCache(["memory://", "{redis_url}?prefix={redis_prefix}"])
                await cache.start()
                counter = redis.Redis.from_url("{redis_url}")
                async def loader():
                    counter.incr("{redis_prefix}loads")
                    await asyncio.sleep(0.3)
                    return "v"
                # line up: wait until every process is ready
                counter.incr("{redis_prefix}ready")
                while int(counter.get("{redis_prefix}ready")) < 3:
                    await asyncio.sleep(0.005)
                out = await asyncio.gather(*[cache.get_or_load("k", loader) for _ in range(20)])
                assert out == ["v"] * 20, out
                await cache.aclose()

            asyncio.run(main())
            """
        )
    )
    procs = [subprocess.Popen([sys.executable, str(script)]) for _ in range(3)]
    for p in procs:
        assert p.wait(30) == 0
    client = redis.Redis.from_url(redis_url)
    try:
        assert int(client.get(f"{redis_prefix}loads") or 0) == 1
    finally:
        client.close()


async def test_replica_without_l1_still_invalidates_others(
    replica: Replica, redis_url: str, redis_prefix: str
) -> None:
    b = replica()
    await b.start()
    writer = TieredCache([f"{redis_url}?prefix={redis_prefix}"])
    try:
        await writer.start()
        await writer.set("k", "old")
        assert await b.get("k") == "old"
        await writer.set("k", "new")
        await wait_until(lambda: "k" not in l1(b))
        assert await b.get("k") == "new"
    finally:
        await writer.aclose()


class _GatedTier(Tier):
    """A real SQLite tier whose reads answer only when the test opens a gate:
    it stands for a slow backend returning a value that is stale by the time it lands."""

    name = "sqlite"

    def __init__(self, inner: SQLiteTier) -> None:
        self.inner = inner
        self.read_done = asyncio.Event()
        self.gate = asyncio.Event()

    async def read_many(self, keys: Sequence[str]) -> list[Record | None]:
        records = await self.inner.read_many(keys)
        self.read_done.set()
        await self.gate.wait()
        return records

    async def write_many(self, items: Sequence[WriteItem], *, only_missing: bool = False) -> None:
        await self.inner.write_many(items, only_missing=only_missing)

    async def remove_many(self, keys: Sequence[str]) -> None:
        await self.inner.remove_many(keys)

    async def remove_tags(self, tags: Sequence[str]) -> None:
        await self.inner.remove_tags(tags)

    async def clear(self) -> None:
        await self.inner.clear()

    async def add_hits(self, counts: Mapping[str, int]) -> None:
        await self.inner.add_hits(counts)

    async def hottest(self, n: int) -> list[str]:
        return await self.inner.hottest(n)

    def stats(self) -> TierStats:
        return self.inner.stats()

    @property
    def healthy(self) -> bool:
        return self.inner.healthy

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_slow_stale_read_is_not_promoted_over_a_newer_write(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    redis_tier_url = f"{redis_url}?prefix={redis_prefix}"
    db = tmp_path / "shared.db"
    a = TieredCache(["memory://", redis_tier_url, f"sqlite:///{db}"])
    gated = _GatedTier(SQLiteTier(db))
    b = TieredCache([MemoryTier(), RedisTier.from_url(redis_tier_url), gated])
    try:
        await a.start()
        await b.start()
        await a.set("k", "v1")
        await wait_until(lambda: b.stats().invalidations_received >= 1)
        await a.tiers[1].remove_many(["k"])  # only L3 has it now
        reader = asyncio.create_task(b.get("k"))
        await asyncio.wait_for(gated.read_done.wait(), 5)  # b holds v1, not yet promoted
        await a.set("k", "v2")
        await wait_until(lambda: b.stats().invalidations_received >= 2)
        gated.gate.set()
        assert await reader == "v1"  # the in-flight read answers what it read...
        assert "k" not in l1(b)  # ...but does not keep it in L1
        shared = await a.tiers[1].read("k")
        assert shared is not None and shared.value == "v2"  # nor write it over v2 in Redis
        assert await b.get("k") == "v2"
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_load_longer_than_the_lease_keeps_other_replicas_waiting(
    redis_url: str, redis_prefix: str
) -> None:
    url = f"{redis_url}?prefix={redis_prefix}"
    a = TieredCache(["memory://", url], lock_lease=0.15)
    b = TieredCache(["memory://", url], lock_lease=0.15)
    raw = aredis.Redis.from_url(redis_url)
    calls: list[str] = []
    gate = asyncio.Event()

    async def slow() -> str:
        calls.append("a")
        await gate.wait()
        return "from-a"

    async def other() -> str:
        calls.append("b")
        return "from-b"

    try:
        await a.start()
        await b.start()
        ta = asyncio.create_task(a.get_or_load("k", slow))
        await wait_until(lambda: calls == ["a"])
        tb = asyncio.create_task(b.get_or_load("k", other))
        # Watch the lease get renewed several times: the load outlives three leases.
        lock = f"{redis_prefix}l:k"
        renewals, last = 0, await raw.pttl(lock)
        deadline = asyncio.get_running_loop().time() + 5
        while renewals < 3:
            assert asyncio.get_running_loop().time() < deadline, "lease never renewed"
            await asyncio.sleep(0.005)
            now = await raw.pttl(lock)
            assert now > 0, "the lease ran out while the loader was still running"
            if now > last:
                renewals += 1
            last = now
        gate.set()
        assert await ta == "from-a"
        assert await tb == "from-a"
        assert calls == ["a"]
    finally:
        await raw.aclose()
        await a.aclose()
        await b.aclose()
