"""Cross-replica L1 invalidation delay vs a raw Redis pub/sub message.

Two TieredCaches (memory + Redis) stand for two replicas. Replica B holds a key in
its L1; replica A overwrites it; we time from the start of A's ``set`` until B's L1
no longer holds the key. The baseline is a raw redis.asyncio PUBLISH until a
subscriber in the same process receives it. Writes bench/results/coherence.md.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import redis.asyncio as aredis

from bench.timing import machine
from hotpath import MemoryTier, TieredCache

RESULTS = Path(__file__).parent / "results"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
ROUNDS = 300


def summary(samples: list[float]) -> tuple[float, float]:
    samples.sort()
    return statistics.median(samples) * 1e6, samples[int(0.99 * (len(samples) - 1))] * 1e6


async def wait_for(cond: Callable[[], bool]) -> None:
    while not cond():  # noqa: ASYNC110 - polling the L1 is what we time
        await asyncio.sleep(0)


def received_more_than(cache: TieredCache, n: int) -> Callable[[], bool]:
    return lambda: cache.stats().invalidations_received > n


async def cache_delay(prefix: str) -> list[float]:
    url = f"{REDIS_URL}?prefix={prefix}"
    a, b = TieredCache(["memory://", url]), TieredCache(["memory://", url])
    await a.start()
    await b.start()
    l1 = b.tiers[0]
    assert isinstance(l1, MemoryTier)
    out = []
    for i in range(ROUNDS):
        await a.set("k", i)
        # let B apply A's message first: a read racing it is (rightly) not kept in L1
        await asyncio.wait_for(wait_for(received_more_than(b, 2 * i)), 2)
        await b.get("k")
        assert "k" in l1
        t0 = time.perf_counter()
        await a.set("k", -i)
        await asyncio.wait_for(wait_for(lambda: "k" not in l1), 2)
        out.append(time.perf_counter() - t0)
    await a.clear()
    await a.aclose()
    await b.aclose()
    return out


async def raw_delay(channel: str) -> list[float]:
    pub = aredis.Redis.from_url(REDIS_URL)
    sub = aredis.Redis.from_url(REDIS_URL)
    ps = sub.pubsub()
    await ps.subscribe(channel)
    await ps.get_message(timeout=1)
    out = []
    for i in range(ROUNDS):
        t0 = time.perf_counter()
        await pub.publish(channel, str(i))
        while (await ps.get_message(timeout=1)) is None:
            pass
        out.append(time.perf_counter() - t0)
    await ps.aclose()  # type: ignore[no-untyped-call]
    await pub.aclose()
    await sub.aclose()
    return out


async def main() -> None:
    tag = uuid.uuid4().hex[:8]
    raw_runs, cache_runs = [], []
    for _ in range(3):
        raw_runs.append(summary(await raw_delay(f"hpbench:{tag}:chan")))
        cache_runs.append(summary(await cache_delay(f"hpbench:{tag}:")))
    raw = (statistics.median(r[0] for r in raw_runs), statistics.median(r[1] for r in raw_runs))
    ours = (
        statistics.median(r[0] for r in cache_runs),
        statistics.median(r[1] for r in cache_runs),
    )
    lines = [
        "# Cross-replica invalidation delay",
        "",
        f"Machine: {machine()}. Date: {time.strftime('%Y-%m-%d')}. Redis on loopback.",
        f"{ROUNDS} rounds, median of 3 runs; µs.",
        "",
        "| path | median (µs) | p99 (µs) | ratio |",
        "| --- | --- | --- | --- |",
        f"| raw PUBLISH -> subscriber receives (baseline) | {raw[0]:.0f} | {raw[1]:.0f} | 1.0 |",
        f"| `set` on replica A -> key gone from B's L1 | {ours[0]:.0f} | {ours[1]:.0f} "
        f"| {ours[0] / raw[0]:.1f} |",
        "",
        "The cache figure includes A's whole `set` (write to Redis, then publish).",
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "coherence.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
