"""Cost of a rate-limit decision: in process against a dict, through Redis against
a PING and a trivial EVALSHA.

Run: ``python -m bench.traffic_rate_speed``; needs Redis (REDIS_URL, else
127.0.0.1:6379). Writes ``bench/results/traffic_rate_speed.md``; takes ~20 s.

LocalRateLimiter.decide over 1 and 3 limits is timed in batches (bench.timing's
``time_sync``: 400 batches of 200 calls, median and p99 of ns per call across
batches) in ``ROUNDS`` interleaved rounds with its baseline, a raw ``dict`` get
and set of one float (the least a per-key counter can cost); the figures are the
medians over rounds, the ratio the median of per-round ratios. The counters never
refuse (a rate far above the call rate), so every call takes the charging path.

RedisRateLimiter.acquire over 3 limits (Redis TIME as the clock, its default) is
timed call by call, interleaved with a raw ``redis.asyncio`` PING and a raw
EVALSHA of ``return 1`` on the same server: the round trip any Redis rate limiter
pays, and the floor of a scripted one.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from pathlib import Path

import redis.asyncio as aioredis

from bench.timing import Figure, machine, time_sync
from hotpath.traffic._gcra import Limit, LocalRateLimiter, Rate
from hotpath.traffic._rate_redis import RedisRateLimiter

RESULTS = Path(__file__).parent / "results" / "traffic_rate_speed.md"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
ROUNDS = 5
REDIS_ROUNDS = 10
REDIS_CALLS = 500  # per variant per round
TARGET_US = 5.0  # LocalRateLimiter.decide over 3 limits, median

# Far above any call rate here: every decision admits and charges.
ROOMY = Rate(limit=1e12, period=1.0)
ONE = [Limit("tenant:acme:rpm", ROOMY, 1)]
THREE = [
    Limit("tenant:acme:rpm", ROOMY, 1),
    Limit("tenant:acme:tpm", ROOMY, 750),
    Limit("model:gpt-4o:rpm", ROOMY, 1),
]


def local() -> dict[str, tuple[Figure, float]]:
    """{variant: (figure, ratio to the dict baseline)} over interleaved rounds."""
    limiter = LocalRateLimiter()
    counters: dict[str, float] = {}

    def dict_get_set() -> None:
        counters["tenant:acme:rpm"] = counters.get("tenant:acme:rpm", 0.0) + 1.0

    variants: dict[str, Callable[[], object]] = {
        "dict get + set (baseline)": dict_get_set,
        "LocalRateLimiter.decide, 1 limit": lambda: limiter.decide(ONE),
        "LocalRateLimiter.decide, 3 limits": lambda: limiter.decide(THREE),
    }
    runs: dict[str, list[Figure]] = {name: [] for name in variants}
    for _ in range(ROUNDS):
        for name, fn in variants.items():
            runs[name].append(time_sync(fn))
    base = runs["dict get + set (baseline)"]
    out = {}
    for name, figs in runs.items():
        med = Figure(
            statistics.median(f.median_ns for f in figs), statistics.median(f.p99_ns for f in figs)
        )
        ratio = statistics.median(f.ratio(b) for f, b in zip(figs, base, strict=True))
        out[name] = (med, ratio)
        print(f"{name}: {med.us()} us, {ratio:.1f}x dict")
    assert limiter.stats.refused == 0, "the bench rate refused a call"
    return out


async def _time(fn: Callable[[], Awaitable[object]], out: list[int]) -> None:
    clock = time.perf_counter_ns
    for _ in range(REDIS_CALLS):
        t0 = clock()
        await fn()
        out.append(clock() - t0)


async def remote() -> tuple[dict[str, tuple[float, float]], str]:
    """{variant: (median us, p99 us)} of each call, and the Redis version."""
    prefix = f"hpbench:rl:{uuid.uuid4().hex[:8]}:"
    limiter = RedisRateLimiter(REDIS_URL, prefix=prefix)
    raw = aioredis.Redis.from_url(REDIS_URL)
    try:
        server = str((await raw.info("server"))["redis_version"])
        sha = str(await raw.script_load("return 1"))

        async def ping() -> object:
            return await raw.ping()

        async def evalsha() -> object:
            return await raw.evalsha(sha, 0)

        async def acquire() -> object:
            return await limiter.acquire(THREE)

        variants: dict[str, Callable[[], Awaitable[object]]] = {
            "raw PING (redis.asyncio)": ping,
            "raw EVALSHA of `return 1`": evalsha,
            "RedisRateLimiter.acquire, 3 limits": acquire,
        }
        samples: dict[str, list[int]] = {name: [] for name in variants}
        for fn in variants.values():  # warm up: connections, script cache
            await _time(fn, [])
        for _ in range(REDIS_ROUNDS):
            for name, fn in variants.items():
                await _time(fn, samples[name])
        stats = limiter.stats
        assert stats.errors == 0, "the limiter saw Redis errors during the run"
        assert stats.refused == 0, "the bench rate refused a call"
        out = {}
        for name, s in samples.items():
            s.sort()
            p99 = s[min(len(s) - 1, round(0.99 * (len(s) - 1)))]
            out[name] = (statistics.median(s) / 1000, p99 / 1000)
            print(f"{name}: {out[name][0]:.1f} / {out[name][1]:.1f} us")
        return out, server
    finally:
        keys = [k async for k in raw.scan_iter(match=f"{prefix}*")]
        if keys:
            await raw.delete(*keys)
        await limiter.aclose()
        await raw.aclose()


def report(
    loc: dict[str, tuple[Figure, float]], rem: dict[str, tuple[float, float]], server: str
) -> str:
    three = loc["LocalRateLimiter.decide, 3 limits"][0].median_ns / 1000
    lines = [
        "# Rate limits (GCRA): cost of a decision",
        "",
        f"`python -m bench.traffic_rate_speed` on {time.strftime('%Y-%m-%d')}; {machine()}; "
        f"Redis {server} on loopback, redis-py {version('redis')}, hiredis {version('hiredis')}.",
        "",
        "## In process: LocalRateLimiter.decide",
        "",
        f"{ROUNDS} interleaved rounds of 400 batches x 200 calls; µs per call, median and "
        "p99 across batches (medians over rounds); ratio = median of per-round ratios to "
        "a raw dict get + set of one float.",
        "",
        "| operation | median µs | p99 µs | x dict get+set |",
        "|---|---:|---:|---:|",
    ]
    for name, (fig, ratio) in loc.items():
        lines.append(
            f"| {name} | {fig.median_ns / 1000:.2f} | {fig.p99_ns / 1000:.2f} | {ratio:.1f} |"
        )
    lines += [
        "",
        f"Target: one decision over 3 limits <= {TARGET_US:g} µs median: "
        f"{'met' if three <= TARGET_US else 'NOT met'} ({three:.2f} µs).",
        "",
        "## Shared: RedisRateLimiter.acquire (one EVALSHA, Redis TIME)",
        "",
        f"{REDIS_ROUNDS} interleaved rounds x {REDIS_CALLS} sequential awaits per variant, "
        "each call timed; µs per call, median and p99 over all calls.",
        "",
        "| operation | median µs | p99 µs | median vs PING | median vs EVALSHA |",
        "|---|---:|---:|---:|---:|",
    ]
    ping = rem["raw PING (redis.asyncio)"][0]
    script = rem["raw EVALSHA of `return 1`"][0]
    for name, (med, p99) in rem.items():
        lines.append(
            f"| {name} | {med:.1f} | {p99:.1f} | {med / ping:.2f}x | {med / script:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    loc = local()
    rem, server = asyncio.run(remote())
    text = report(loc, rem, server)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
