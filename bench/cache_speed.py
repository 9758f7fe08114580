"""TieredCache speed: L1 hit, @cached hit overhead, and throughput with 100 tasks.

Run: ``python -m bench.cache_speed`` (needs Redis: REDIS_URL or 127.0.0.1:6379).
Writes bench/results/cache_speed.md. Every figure comes with a baseline measured
in the same run; we repeat each measurement and keep the median of the repeats.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import redis.asyncio as aredis

from bench.timing import Figure, machine, time_async, time_sync
from hotpath import TieredCache, cached

RESULTS = Path(__file__).parent / "results"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
REPEATS = 5


def best_of(figures: list[Figure]) -> Figure:
    return Figure(
        statistics.median(f.median_ns for f in figures),
        statistics.median(f.p99_ns for f in figures),
    )


async def l1_hit(tmp: Path) -> list[str]:
    cache = TieredCache(["memory://", f"sqlite:///{tmp / 'a.db'}"])
    await cache.set("key", {"v": 1})
    d = {"key": {"v": 1}}
    dict_f, cache_f = [], []
    for _ in range(REPEATS):
        dict_f.append(time_sync(lambda: d.get("key")))
        cache_f.append(await time_async(lambda: cache.get("key")))
    await cache.aclose()
    base, ours = best_of(dict_f), best_of(cache_f)
    return [
        f"| `dict.get` (baseline) | {base.us()} | 1.0 |",
        f"| `await TieredCache.get`, L1 hit | {ours.us()} | {ours.ratio(base):.1f} |",
    ]


async def cached_overhead(tmp: Path) -> list[str]:
    cache = TieredCache(["memory://", f"sqlite:///{tmp / 'b.db'}"])

    async def raw(user: int, q: str) -> str:
        return q

    wrapped = cached(cache, ttl=600)(raw)
    await wrapped(1, "hello")
    raw_f, wrapped_f = [], []
    for _ in range(REPEATS):
        raw_f.append(await time_async(lambda: raw(1, "hello")))
        wrapped_f.append(await time_async(lambda: wrapped(1, "hello")))
    await cache.aclose()
    base, ours = best_of(raw_f), best_of(wrapped_f)
    over = Figure(ours.median_ns - base.median_ns, ours.p99_ns - base.p99_ns)
    return [
        f"| `await f(1, 'hello')`, undecorated (baseline) | {base.us()} | 1.0 |",
        f"| `await f(1, 'hello')` with `@cached`, hit | {ours.us()} | {ours.ratio(base):.1f} |",
        f"| `@cached` hit overhead (difference) | {over.us()} | |",
    ]


async def throughput(tmp: Path) -> list[str]:
    prefix = f"hpbench:{uuid.uuid4().hex[:8]}:"
    keys = [f"k{i}" for i in range(10_000)]
    rng = random.Random(1)
    weights = [1 / (r**1.0) for r in range(1, len(keys) + 1)]
    stream = rng.choices(keys, weights=weights, k=100_000)
    raw = aredis.Redis.from_url(REDIS_URL)
    value = b"x" * 200

    async def run(op: object, tasks: int = 100) -> tuple[float, list[float]]:
        lat: list[float] = []
        chunks = [stream[i::tasks] for i in range(tasks)]

        async def worker(chunk: list[str]) -> None:
            for k in chunk:
                t0 = time.perf_counter()
                await op(k)  # type: ignore[operator]
                lat.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in chunks))
        return len(stream) / (time.perf_counter() - t0), lat

    async def raw_get(k: str) -> None:
        if await raw.get(prefix + "raw:" + k) is None:
            await raw.set(prefix + "raw:" + k, value)

    cache = TieredCache(
        [
            "memory://?max_entries=1000",
            f"{REDIS_URL}?prefix={prefix}",
            f"sqlite:///{tmp / 'c.db'}",
        ]
    )

    async def tiered(k: str) -> None:
        async def load() -> bytes:
            return value

        await cache.get_or_load(k, load, ttl=600)

    rows = []
    results = {}
    for name, op in (
        ("raw redis.asyncio GET (+SET on miss)", raw_get),
        ("TieredCache.get_or_load", tiered),
    ):
        rates: list[float] = []
        samples: list[float] = []
        for _ in range(3):
            rate, lat = await run(op)
            rates.append(rate)
            samples.extend(lat)
        samples.sort()
        results[name] = (
            statistics.median(rates),
            samples[len(samples) // 2],
            samples[int(0.99 * (len(samples) - 1))],
        )
    base_ops = results["raw redis.asyncio GET (+SET on miss)"][0]
    for name, (ops, p50, p99) in results.items():
        rows.append(
            f"| {name} | {ops:,.0f} | {p50 * 1e6:.0f} / {p99 * 1e6:.0f} | {ops / base_ops:.1f} |"
        )
    stats = cache.stats()
    rows.append("")
    rows.append(
        "Tier hits in the TieredCache run: "
        + ", ".join(f"{t.name} {t.hits:,}" for t in stats.tiers)
        + f"; misses {stats.misses:,}, loads {stats.loads:,}."
    )
    await cache.clear()
    await cache.aclose()
    async for k in raw.scan_iter(match=f"{prefix}*", count=1000):
        await raw.delete(k)
    await raw.aclose()
    return rows


async def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        lines = [
            "# TieredCache speed",
            "",
            f"Machine: {machine()}. Date: {time.strftime('%Y-%m-%d')}.",
            "",
            "Per-operation time, median / p99 in µs over 400 batches, median of "
            f"{REPEATS} repeats; ratio = median / baseline median.",
            "",
            "| operation | median / p99 (µs) | ratio |",
            "| --- | --- | --- |",
        ]
        lines += await l1_hit(tmp)
        lines += await cached_overhead(tmp)
        lines += [
            "",
            "Throughput: 100 concurrent tasks, 100,000 Zipf(1.0) lookups over 10,000 keys, "
            "200-byte values; memory (1,000 entries) + Redis + SQLite vs raw redis.asyncio. "
            "Median ops/s of 3 runs; latency per lookup p50 / p99 in µs.",
            "",
            "| client | ops/s | p50 / p99 (µs) | ratio |",
            "| --- | --- | --- | --- |",
        ]
        lines += await throughput(tmp)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cache_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
