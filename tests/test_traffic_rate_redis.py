"""RedisRateLimiter against a real Redis: the shared rate limiter contract, the same
decisions as LocalRateLimiter, one round trip per call, outages (fail open or
closed, recovery), and three processes sharing one limit in real time."""

from __future__ import annotations

import contextlib
import json
import logging
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from hotpath._clock import ManualClock
from hotpath._errors import ConfigError
from hotpath.traffic._gcra import Decision, Limit, LocalRateLimiter, Rate
from hotpath.traffic._rate_redis import EPOCH, RedisRateLimiter
from redis_server import RedisServer
from test_traffic_rate_local import EIGHT, RateLimiterContract, T

pytestmark = pytest.mark.redis

THREE = [
    Limit("rpm", EIGHT, 1),
    Limit("tpm", Rate(limit=1000, period=60.0), 120),
    Limit("x", EIGHT),
]


def _float(value: bytes | str | None) -> float:
    assert value is not None
    return float(value)


class TestRedisContract(RateLimiterContract):
    @pytest.fixture
    async def limiter(
        self, clock: ManualClock, redis_url: str, redis_prefix: str
    ) -> AsyncIterator[RedisRateLimiter]:
        rl = RedisRateLimiter(redis_url, prefix=redis_prefix, clock=clock)
        yield rl
        await rl.aclose()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


# -- agreement with the local limiter ----------------------------------------------------


async def test_same_decisions_as_the_local_limiter(redis_url: str, redis_prefix: str) -> None:
    """A random sequence of acquires and settles gives identical decisions (times
    and intervals are exact in binary, so even the floats agree to the bit)."""
    rng = random.Random(11)
    local_clock, redis_clock = ManualClock(), ManualClock()
    local = LocalRateLimiter(clock=local_clock)
    remote = RedisRateLimiter(redis_url, prefix=redis_prefix, clock=redis_clock)
    rates = [
        Rate(limit=8, period=1.0, burst=2),
        Rate(limit=4, period=2.0),
        Rate(limit=16, period=0.5, burst=6),
    ]
    keys = ["a", "b", "c", "d"]
    seen = set()
    try:
        for step in range(500):
            gap = rng.choice([0.0, 0.0, 1 / 64, 1 / 16, 1 / 4, 1.0])
            local_clock.advance(gap)
            redis_clock.advance(gap)
            if rng.random() < 0.1:
                key, rate, delta = rng.choice(keys), rng.choice(rates), rng.randint(-3, 3)
                await local.settle(key, rate, delta)
                await remote.settle(key, rate, delta)
                continue
            limits = [
                Limit(k, rng.choice(rates), rng.choice([0, 1, 1, 1, 2, 3, 7]))
                for k in rng.sample(keys, rng.randint(1, 3))
            ]
            max_wait = rng.choice([0.0, 0.0, 0.0, 0.25, 1.0])
            want = await local.acquire(limits, max_wait=max_wait)
            got = await remote.acquire(limits, max_wait=max_wait)
            assert got == want, f"step {step}: {limits} max_wait={max_wait}"
            seen.add((want.allowed, want.wait > 0, want.retry_after == float("inf")))
        assert remote.stats == local.stats
    finally:
        await remote.aclose()
    # the sequence went through every kind of decision
    assert seen == {(True, False, False), (True, True, False), (False, False, False),
                    (False, False, True)}  # fmt: skip


# -- Redis specifics ----------------------------------------------------------------------


async def test_one_round_trip_per_acquire_and_per_settle(redis_server: RedisServer) -> None:
    """MONITOR on a private server: each call sends one EVALSHA; the GET/SET inside
    the script run in Redis (MONITOR shows them as from "lua")."""
    rl = RedisRateLimiter(redis_server.url, prefix="rt:", clock=ManualClock())
    watcher = aioredis.Redis.from_url(redis_server.url)
    other = aioredis.Redis.from_url(redis_server.url)
    try:
        # connect, and load both scripts on this fresh server (NOSCRIPT, LOAD, again)
        await rl.acquire(THREE)
        await rl.settle("tpm", THREE[1].rate, 0.5)
        await other.ping()  # connected before MONITOR starts
        commands: list[dict[str, Any]] = []
        async with watcher.monitor() as monitor:
            for _ in range(5):
                await rl.acquire(THREE)
            await rl.settle("tpm", THREE[1].rate, -50)
            await other.echo("done")
            async for command in monitor.listen():
                commands.append(command)
                if command["command"] == "ECHO done":
                    break
        sent = [c["command"].split()[0] for c in commands if c["client_type"] != "lua"]
        assert sent == ["EVALSHA"] * 6 + ["ECHO"]
        inner = [c["command"].split()[0] for c in commands if c["client_type"] == "lua"]
        assert inner.count("GET") == 5 * 3 + 1
    finally:
        await rl.aclose()
        await watcher.aclose()
        await other.aclose()


async def test_the_script_is_loaded_again_after_a_flush(
    redis_url: str, redis_prefix: str, raw: aioredis.Redis
) -> None:
    rl = RedisRateLimiter(redis_url, prefix=redis_prefix, clock=ManualClock())
    try:
        assert (await rl.acquire([Limit("k", EIGHT, 4)])).allowed
        await raw.script_flush()
        assert (await rl.acquire([Limit("k", EIGHT, 1)])).limit == "k"
        await raw.script_flush()
        await rl.settle("k", EIGHT, -4)
        assert (await rl.acquire([Limit("k", EIGHT, 4)])).allowed
        assert rl.stats.errors == 0
    finally:
        await rl.aclose()


async def test_counters_are_float_seconds_that_expire_once_idle(
    redis_url: str, redis_prefix: str, raw: aioredis.Redis
) -> None:
    clock = ManualClock()
    rl = RedisRateLimiter(redis_url, prefix=redis_prefix, clock=clock)
    try:
        await rl.acquire([Limit("k", EIGHT, 3)])
        assert _float(await raw.get(f"{redis_prefix}k")) == clock.now() - EPOCH + 3 * T
        # an injected clock need not run with Redis's: a minute of slack past idle
        ttl = await raw.pttl(f"{redis_prefix}k")
        assert ttl > 60_000
        assert ttl <= 60_375
        await rl.acquire([Limit("check", EIGHT, 0)])
        assert await raw.exists(f"{redis_prefix}check") == 0
        await rl.settle("k", EIGHT, -3)
        assert await raw.exists(f"{redis_prefix}k") == 0
    finally:
        await rl.aclose()


async def test_redis_time_is_the_clock_when_none_is_given(
    redis_url: str, redis_prefix: str, raw: aioredis.Redis
) -> None:
    """Two limiters without a clock share one timeline: Redis TIME."""
    slow = Rate(limit=5, period=3600.0, burst=3)  # real time moves nothing in this test
    a = RedisRateLimiter(redis_url, prefix=redis_prefix)
    b = RedisRateLimiter(redis_url, prefix=redis_prefix)
    try:
        assert [(await rl.acquire([Limit("k", slow)])).allowed for rl in (a, b, a, b)] == [
            True,
            True,
            True,
            False,
        ]
        d = await a.acquire([Limit("k", slow)])
        assert d.retry_after == pytest.approx(720.0, abs=1.0)
        tat = _float(await raw.get(f"{redis_prefix}k"))
        seconds, micros = await raw.time()
        assert tat == pytest.approx(seconds + micros / 1e6 - EPOCH + 3 * 720.0, abs=1.0)
        ttl = await raw.pttl(f"{redis_prefix}k")
        assert ttl > 3 * 720_000
        assert ttl <= 3 * 720_000 + 1_000
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_given_client_is_used_and_left_open(
    redis_url: str, redis_prefix: str, raw: aioredis.Redis
) -> None:
    rl = RedisRateLimiter(client=raw, prefix=redis_prefix, clock=ManualClock())
    assert (await rl.acquire([Limit("k", EIGHT)])).remaining == 3.0
    await rl.aclose()
    assert await raw.exists(f"{redis_prefix}k") == 1


async def test_a_closed_limiter_refuses_to_connect_again(redis_url: str) -> None:
    rl = RedisRateLimiter(redis_url, clock=ManualClock(), on_error="closed")
    await rl.aclose()
    d = await rl.acquire([Limit("k", EIGHT)])
    assert (d.allowed, d.limit) == (False, "redis-unavailable")
    assert rl.stats.errors == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give exactly one of url and client, got url=None, client=None"),
        ({"url": "http://h:6379"}, "url must start with redis://, rediss:// or unix://"),
        ({"url": "redis://h", "on_error": "ignore"}, "on_error must be 'open' or 'closed'"),
        ({"url": "redis://h", "timeout": 0}, "timeout must be a positive number, got 0"),
        ({"url": "redis://h", "retry_interval": -1}, "retry_interval must be a positive number"),
        ({"url": "redis://h", "prefix": ""}, "prefix must be a non-empty string, got ''"),
    ],
)
def test_construction_checks_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        RedisRateLimiter(**kwargs)
    assert str(info.value).startswith(message)


def test_repr_hides_the_password() -> None:
    rl = RedisRateLimiter("redis://u:secret@h:6379/0", on_error="closed")
    assert "secret" not in repr(rl)
    assert repr(rl).startswith("RedisRateLimiter('redis://u:***@h:6379/0', prefix='hp:rl:'")


# -- outages ---------------------------------------------------------------------------------


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "hotpath.traffic" and r.levelno == logging.WARNING
    ]


async def test_redis_down_fails_open_then_recovers_after_retry_interval(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    rl = RedisRateLimiter(redis_server.url, prefix="o:", clock=clock, retry_interval=5.0)
    lim = [Limit("k", EIGHT, 1)]
    caplog.set_level(logging.DEBUG, logger="hotpath.traffic")
    try:
        assert (await rl.acquire(lim)).allowed
        redis_server.stop()
        for _ in range(3):
            assert await rl.acquire(lim) == Decision(True, 0.0, 0.0, None, float("inf"), 0.0)
        await rl.settle("k", EIGHT, -1)  # skipped: Redis is left alone
        assert (rl.stats.errors, rl.stats.failed_open, rl.stats.healthy) == (1, 3, False)
        # an impossible cost is refused even without Redis
        assert (await rl.acquire([Limit("k", EIGHT, 5)])).retry_after == float("inf")

        clock.advance(5.0)  # time to try again: still down, one more error, no new warning
        assert (await rl.acquire(lim)).allowed
        assert (rl.stats.errors, rl.stats.failed_open) == (2, 4)
        assert len(_warnings(caplog)) == 1
        assert "Redis failed during acquire" in _warnings(caplog)[0]

        redis_server.start()
        assert (await rl.acquire(lim)).allowed  # still within retry_interval: not asked
        assert (rl.stats.failed_open, rl.stats.healthy) == (5, False)
        clock.advance(5.0)
        d = await rl.acquire(lim)
        assert (d.allowed, d.remaining) == (True, 3.0)  # a fresh server: an idle counter
        assert rl.stats.healthy is True
        assert rl.stats.errors == 2
        assert "available again" in _warnings(caplog)[-1]
        assert rl.stats.decisions == 8
    finally:
        await rl.aclose()


async def test_redis_down_fails_closed(redis_server: RedisServer) -> None:
    clock = ManualClock()
    rl = RedisRateLimiter(
        redis_server.url, prefix="c:", clock=clock, on_error="closed", retry_interval=2.5
    )
    try:
        redis_server.stop()
        for _ in range(2):
            d = await rl.acquire([Limit("k", EIGHT)])
            assert d == Decision(False, 0.0, 2.5, "redis-unavailable", 0.0, 0.0)
        assert rl.stats.failed_closed == 2
        assert rl.stats.refused == 2
        assert rl.stats.errors == 1
        redis_server.start()
        clock.advance(2.5)
        assert (await rl.acquire([Limit("k", EIGHT)])).allowed
        assert rl.stats.healthy is True
    finally:
        await rl.aclose()


async def test_a_server_that_does_not_answer_is_cut_off_at_timeout(
    redis_server: RedisServer,
) -> None:
    rl = RedisRateLimiter(redis_server.url, prefix="t:", clock=ManualClock(), timeout=0.1)
    raw = aioredis.Redis.from_url(redis_server.url)
    try:
        assert (await rl.acquire([Limit("k", EIGHT)])).allowed  # connected
        conn = await raw.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        await conn.send_command("DEBUG", "SLEEP", "0.8")  # the server stops answering
        t0 = time.perf_counter()
        d = await rl.acquire([Limit("k", EIGHT)])
        elapsed = time.perf_counter() - t0
        assert (d.allowed, rl.stats.failed_open, rl.stats.errors) == (True, 1, 1)
        assert elapsed < 0.5
        assert await conn.read_response() == b"OK"
        await raw.connection_pool.release(conn)
    finally:
        await rl.aclose()
        await raw.aclose()


# -- several processes, real time ----------------------------------------------------------

WORKER = r"""
import asyncio, json, sys, time
from hotpath.traffic._gcra import Limit, Rate
from hotpath.traffic._rate_redis import RedisRateLimiter

url, prefix, duration = sys.argv[1], sys.argv[2], float(sys.argv[3])

async def main():
    rl = RedisRateLimiter(url, prefix=prefix)  # no clock: Redis TIME
    limits = [Limit("shared", Rate(limit=200, period=1.0, burst=20), 1)]
    await rl.acquire([Limit("warm-up", Rate(limit=1), 0)])
    print("ready", flush=True)
    start = float(sys.stdin.readline())
    await asyncio.sleep(max(0.0, start - time.time()))  # the common start
    admitted, calls = [], 0
    while (t0 := time.time()) < start + duration:
        d = await rl.acquire(limits)
        calls += 1
        if d.allowed:
            admitted.append((t0, time.time()))
    print(json.dumps({"admitted": admitted, "calls": calls, "errors": rl.stats.errors}))
    await rl.aclose()

asyncio.run(main())
"""


def _run_workers(n: int, args: list[str]) -> list[dict[str, Any]]:
    """Start ``n`` WORKER processes, start them together once all are ready, and
    return what each printed."""
    with contextlib.ExitStack() as stack:
        procs = [
            stack.enter_context(
                subprocess.Popen(
                    [sys.executable, "-c", WORKER, *args],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
            for _ in range(n)
        ]
        pipes = [(p.stdin, p.stdout) for p in procs if p.stdin and p.stdout]
        for _, out in pipes:
            assert out.readline() == "ready\n"
        start = repr(time.time() + 0.2)
        for into, _ in pipes:
            into.write(start + "\n")
            into.close()
        results = [json.loads(out.read()) for _, out in pipes]
        assert [p.wait(timeout=60) for p in procs] == [0] * n
    return results


@pytest.mark.slow
def test_three_processes_share_one_limit(redis_url: str, redis_prefix: str) -> None:
    """3 processes hammer limit=200/s, burst=20 for 1.5 s of real time. Each admission
    happened between the call's start and its answer, so a window of 1 s holds at
    least the admissions whose whole call lies inside it: never more than 220; and
    the total is close to what the rate allows."""
    limit, burst, period, duration = 200, 20, 1.0, 1.5
    results = _run_workers(3, [redis_url, redis_prefix, repr(duration)])
    assert all(r["admitted"] for r in results)  # every process took part
    assert [r["errors"] for r in results] == [0, 0, 0]
    spans = sorted((t0, t1) for r in results for t0, t1 in r["admitted"])
    calls = sum(r["calls"] for r in results)
    assert calls > 1.5 * len(spans)  # demand above the rate: many calls were refused
    worst = max(sum(1 for t0, t1 in spans if t0 >= s and t1 <= s + period) for s, _ in spans)
    assert worst <= limit + burst
    first, last = spans[0][0], max(t1 for _, t1 in spans)
    assert len(spans) <= burst + limit * (last - first) + 1
    assert len(spans) >= 0.9 * (burst + limit * duration)
    assert worst >= 0.9 * (limit + burst)  # the window bound is nearly reached
