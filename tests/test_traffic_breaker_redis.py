"""Circuit breaker states shared through a real Redis: one process, several replicas.

Each replica is a CircuitBreaker with its own RedisBreakerSync (its own clients);
they share one ManualClock, as hosts with synchronised wall clocks would.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio

from hotpath._clock import ManualClock
from hotpath._errors import CircuitOpenError, ConfigError
from hotpath.traffic._breaker import BreakerConfig, BreakerState, CircuitBreaker
from hotpath.traffic._breaker_redis import BreakerSyncStats, RedisBreakerSync
from redis_server import RedisServer, free_port

pytestmark = pytest.mark.redis

CONFIG = BreakerConfig(window=10, min_calls=10, wait=30.0, half_open_calls=3)
STATES: tuple[BreakerState, ...] = ("closed", "open", "half_open")


class Replica:
    """One replica's breakers and sync; ``entered[name][state]`` is set on each entry."""

    def __init__(
        self,
        sync: RedisBreakerSync,
        clock: ManualClock,
        configs: dict[str, BreakerConfig],
        attach: bool = True,
    ) -> None:
        self.sync = sync
        self.breakers = {
            name: CircuitBreaker(name, cfg, clock=clock) for name, cfg in configs.items()
        }
        self.entered = {name: {s: asyncio.Event() for s in STATES} for name in configs}
        for breaker in self.breakers.values():
            breaker.add_listener(self._saw)
            if attach:
                sync.attach(breaker)

    def _saw(self, name: str, old: BreakerState, new: BreakerState) -> None:
        self.entered[name][new].set()

    @property
    def breaker(self) -> CircuitBreaker:
        return next(iter(self.breakers.values()))

    async def wait_for(
        self, state: BreakerState, name: str = "gpt-east", limit: float = 1.0
    ) -> None:
        """Wait (for a message, not for time) until breaker ``name`` enters ``state``."""
        event = self.entered[name][state]
        await asyncio.wait_for(event.wait(), limit)
        event.clear()


ReplicaFactory = Callable[..., Any]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def replicas(
    redis_url: str, redis_prefix: str, clock: ManualClock
) -> AsyncIterator[ReplicaFactory]:
    """``await make(url=..., configs=..., start=True)``: a started replica, closed afterwards."""
    made: list[Replica] = []

    async def make(
        url: str | None = None,
        configs: dict[str, BreakerConfig] | None = None,
        *,
        start: bool = True,
        attach: bool = True,
    ) -> Replica:
        sync = RedisBreakerSync(url or redis_url, prefix=redis_prefix, clock=clock)
        replica = Replica(sync, clock, configs or {"gpt-east": CONFIG}, attach=attach)
        made.append(replica)
        if start:
            await sync.start()
        return replica

    yield make
    for replica in made:
        await replica.sync.aclose()


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.config.min_calls):
        breaker.record_failure(0.1)
    assert breaker.state == "open"


def state(breaker: CircuitBreaker) -> BreakerState:
    return breaker.state


async def eventually(predicate: Callable[[], bool], limit: float = 10.0) -> None:
    """Wait until ``predicate()`` holds: for a condition on the network, not for time."""
    async with asyncio.timeout(limit):
        while not predicate():
            await asyncio.sleep(0.01)


# -- sharing ----------------------------------------------------------------------------


async def test_an_open_reaches_every_replica_with_the_same_retry_after(
    replicas: ReplicaFactory, clock: ManualClock, redis_url: str, redis_prefix: str
) -> None:
    a, b, c = await replicas(), await replicas(), await replicas()
    assert all(r.sync.healthy for r in (a, b, c))
    clock.advance(2.0)
    started = time.perf_counter()
    trip(a.breaker)
    await asyncio.gather(b.wait_for("open"), c.wait_for("open"))
    elapsed = time.perf_counter() - started
    assert elapsed < 0.25, f"an open took {elapsed:.3f} s to reach the other replicas"

    assert a.breaker.retry_after == 30.0
    for other in (b, c):
        assert state(other.breaker) == "open"
        assert other.breaker.retry_after == pytest.approx(30.0, abs=1e-6)
        with pytest.raises(CircuitOpenError) as info:
            other.breaker.check()
        assert info.value.name == "gpt-east"
        assert info.value.retry_after == pytest.approx(30.0, abs=1e-6)
        # Applying a remote transition publishes nothing: no echo.
        assert other.sync.stats().published == 0
    assert a.sync.stats().published == 1

    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        shared = await client.hgetall(f"{redis_prefix}gpt-east")
        ttl = await client.pttl(f"{redis_prefix}gpt-east")
    finally:
        await client.aclose()
    assert shared[b"s"] == b"open"
    assert float(shared[b"u"]) == clock.now() + 30.0
    assert ttl > 3_600_000
    assert ttl <= 3_630_000


async def test_closing_after_trials_reaches_the_other_replicas(
    replicas: ReplicaFactory, clock: ManualClock
) -> None:
    a, b = await replicas(), await replicas()
    trip(a.breaker)
    await b.wait_for("open")
    clock.advance(30.0)
    assert state(a.breaker) == "half_open"
    for _ in range(3):
        assert a.breaker.try_acquire()
        a.breaker.record_success(0.2)
    assert state(a.breaker) == "closed"
    await b.wait_for("closed")
    assert state(b.breaker) == "closed"
    assert b.breaker.try_acquire() is True
    assert b.sync.stats().published == 0
    assert a.sync.stats().published == 2


async def test_failed_trials_reopen_every_replica(
    replicas: ReplicaFactory, clock: ManualClock
) -> None:
    a, b = await replicas(), await replicas()
    trip(a.breaker)
    await b.wait_for("open")
    clock.advance(30.0)
    assert state(a.breaker) == "half_open"
    assert state(b.breaker) == "half_open"
    assert b.breaker.try_acquire()  # b's own trial is under way when a decides
    for _ in range(3):
        assert a.breaker.try_acquire()
    a.breaker.record_failure(0.1)
    a.breaker.record_success(0.1)
    a.breaker.record_failure(0.1)  # 2 of 3 trials failed
    assert state(a.breaker) == "open"
    await b.wait_for("open")
    assert b.breaker.retry_after == pytest.approx(30.0, abs=1e-6)


async def test_a_replica_starting_late_starts_open(
    replicas: ReplicaFactory, clock: ManualClock
) -> None:
    a, b = await replicas(), await replicas()
    trip(a.breaker)
    await b.wait_for("open")
    clock.advance(10.0)
    late = await replicas()
    # start() returned: the shared state is already in.
    assert state(late.breaker) == "open"
    assert late.breaker.retry_after == pytest.approx(20.0, abs=1e-6)
    assert late.sync.stats() == BreakerSyncStats(
        healthy=True, breakers=1, published=0, applied=1, dropped=0, outages=0, faults=0
    )


async def test_a_breaker_attached_after_start_reads_the_shared_state(
    replicas: ReplicaFactory,
) -> None:
    a, b = await replicas(), await replicas()
    trip(a.breaker)
    await b.wait_for("open")
    late = await replicas(attach=False)
    late.sync.attach(late.breaker)
    await late.wait_for("open")
    assert late.breaker.retry_after == pytest.approx(30.0, abs=1e-6)


async def test_a_sync_built_on_a_given_client(
    replicas: ReplicaFactory, clock: ManualClock, redis_url: str, redis_prefix: str
) -> None:
    """``client=``: the sync uses it (never closes it) and copies its settings for pub/sub."""
    a = await replicas()
    client = redis.asyncio.Redis.from_url(redis_url)
    sync = RedisBreakerSync(client=client, prefix=redis_prefix, clock=clock)
    other = Replica(sync, clock, {"gpt-east": CONFIG})
    try:
        await sync.start()
        assert sync.healthy
        trip(other.breaker)
        await a.wait_for("open")
        await eventually(lambda: sync.stats().published == 1)
    finally:
        await sync.aclose()
    assert await client.ping() is True  # still usable: not ours to close
    await client.aclose()


# -- Redis unavailable ---------------------------------------------------------------------


async def test_redis_down_then_back(
    redis_server: RedisServer,
    replicas: ReplicaFactory,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Down: breakers work locally, one warning, unhealthy. Back: the opens still current
    are shared, the stale one (its wait ran out meanwhile) is dropped."""
    configs = {
        "fresh": BreakerConfig(window=10, min_calls=10, wait=1000.0),
        "stale": BreakerConfig(window=10, min_calls=10, wait=10.0),
    }
    a = await replicas(redis_server.url, configs)
    b = await replicas(redis_server.url, configs)
    caplog.set_level(logging.WARNING, logger="hotpath.traffic")

    redis_server.stop()
    trip(a.breakers["fresh"])
    trip(a.breakers["stale"])
    await eventually(lambda: not a.sync.healthy and not b.sync.healthy)
    # Locally, nothing changed.
    with pytest.raises(CircuitOpenError):
        a.breakers["fresh"].check()
    assert b.breakers["fresh"].try_acquire() is True
    clock.advance(20.0)
    assert state(a.breakers["stale"]) == "half_open"

    redis_server.start()
    await b.wait_for("open", "fresh", limit=15.0)
    assert b.breakers["fresh"].retry_after == pytest.approx(980.0, abs=1e-6)
    await eventually(lambda: a.sync.healthy and b.sync.healthy)
    assert state(b.breakers["stale"]) == "closed"

    stats = a.sync.stats()
    assert (stats.healthy, stats.published, stats.dropped, stats.outages) == (True, 1, 1, 1)
    assert stats.faults >= 1
    assert b.sync.stats().outages == 1
    warnings = [
        r for r in caplog.records if r.name == "hotpath.traffic" and r.levelno >= logging.WARNING
    ]
    assert len(warnings) == 2  # one per sync, for the whole outage
    assert all(
        f"Redis at {redis_server.url} unavailable" in r.getMessage()
        and "breakers carry on locally" in r.getMessage()
        for r in warnings
    )


async def test_start_without_redis_returns_and_retries(
    replicas: ReplicaFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """start() does not hang on an unreachable Redis; the breaker works locally."""
    caplog.set_level(logging.WARNING, logger="hotpath.traffic")
    started = time.perf_counter()
    a = await replicas(f"redis://127.0.0.1:{free_port()}/0")
    assert time.perf_counter() - started < 2.0
    assert a.sync.healthy is False
    trip(a.breaker)
    with pytest.raises(CircuitOpenError):
        a.breaker.check()
    await eventually(lambda: a.sync.stats().faults >= 2)
    stats = a.sync.stats()
    assert (stats.outages, stats.published) == (1, 0)
    assert len([r for r in caplog.records if r.name == "hotpath.traffic"]) == 1


# -- arguments ------------------------------------------------------------------------------


def test_sync_argument_errors(redis_url: str) -> None:
    def error(*args: Any, **kwargs: Any) -> str:
        with pytest.raises(ConfigError) as info:
            RedisBreakerSync(*args, **kwargs)
        return str(info.value)

    assert (
        error()
        == "RedisBreakerSync needs exactly one of url= or client=, got url=None and client=None"
    )
    assert error("localhost:6379") == "url must be a redis:// URL, got 'localhost:6379'"
    assert error(client="redis://x") == "client must be a redis.asyncio.Redis, got str 'redis://x'"
    assert error(redis_url, prefix="") == "prefix must be a non-empty str, got ''"

    sync = RedisBreakerSync(redis_url)
    breaker = CircuitBreaker("gpt-east")
    sync.attach(breaker)
    with pytest.raises(ConfigError) as info:
        sync.attach(CircuitBreaker("gpt-east"))
    assert str(info.value) == "a breaker named 'gpt-east' is already attached"
    with pytest.raises(ConfigError) as info:
        RedisBreakerSync(redis_url).attach(breaker)
    assert str(info.value) == "breaker 'gpt-east' is already attached to a sync"
    with pytest.raises(ConfigError) as info:
        sync.attach("gpt-east")  # type: ignore[arg-type]
    assert str(info.value) == "breaker must be a CircuitBreaker, got str 'gpt-east'"
    assert sync.healthy is False  # not started
