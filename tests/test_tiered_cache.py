"""TieredCache behaviour, run against single tiers and their combinations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from hotpath import (
    CacheError,
    CodecError,
    ConfigError,
    InvalidKeyError,
    InvalidTTLError,
    ManualClock,
    MemoryTier,
    Record,
    RedisTier,
    TieredCache,
)
from hotpath.cache import CacheEvent

COMBOS = [
    "memory",
    "redis",
    "sqlite",
    "memory+redis",
    "memory+sqlite",
    "redis+sqlite",
    "memory+redis+sqlite",
]

MakeCache = Callable[..., TieredCache]


async def eventually(cond: Callable[[], bool], limit: float = 5.0) -> None:
    """Yield to the loop (background tasks doing real I/O) until ``cond()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not cond():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def make_cache(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[MakeCache]:
    """Build caches from a combo name; each call shares the same backends (like replicas)."""
    made: list[TieredCache] = []

    def build(combo: str, **options: object) -> TieredCache:
        urls = []
        for part in combo.split("+"):
            if part == "memory":
                urls.append("memory://?max_entries=10000")
            elif part == "redis":
                base = request.getfixturevalue("redis_url")
                prefix = request.getfixturevalue("redis_prefix")
                # A generous connect timeout: these tests check coherence, not how a
                # tier degrades; on a loaded 2-core runner a burst of connects can pass
                # the 0.25 s default and bypass Redis (a second load).
                urls.append(f"{base}?prefix={prefix}&connect_timeout=2")
            else:
                urls.append(f"sqlite:///{tmp_path / 'l3.db'}")
        options.setdefault("clock", clock)
        cache = TieredCache(urls, **options)  # type: ignore[arg-type]
        made.append(cache)
        return cache

    yield build
    for cache in made:
        await cache.aclose()


@pytest.fixture(params=COMBOS)
def combo(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_get_missing_returns_default(make_cache: MakeCache, combo: str) -> None:
    cache = make_cache(combo)
    assert await cache.get("nope") is None
    assert await cache.get("nope", "dflt") == "dflt"


async def test_set_get_delete(make_cache: MakeCache, combo: str) -> None:
    cache = make_cache(combo)
    await cache.set("k", {"answer": 42, "list": [1, "two"]})
    assert await cache.get("k") == {"answer": 42, "list": [1, "two"]}
    await cache.delete("k")
    assert await cache.get("k") is None


async def test_none_value_is_cached_distinct_from_miss(make_cache: MakeCache, combo: str) -> None:
    cache = make_cache(combo)
    calls = 0

    async def loader() -> object:
        nonlocal calls
        calls += 1
        return None

    assert await cache.get_or_load("k", loader) is None
    assert await cache.get_or_load("k", loader) is None
    assert calls == 1


async def test_bytes_key_names_same_entry_as_str(make_cache: MakeCache, combo: str) -> None:
    cache = make_cache(combo)
    await cache.set(b"k", b"raw-bytes")
    assert await cache.get("k") == b"raw-bytes"


async def test_ttl_expires_in_every_tier(
    make_cache: MakeCache, combo: str, clock: ManualClock
) -> None:
    cache = make_cache(combo)
    await cache.set("k", "v", ttl=10)
    clock.advance(9)
    assert await cache.get("k") == "v"
    clock.advance(2)
    assert await cache.get("k") is None


async def test_default_ttl_applies(make_cache: MakeCache, combo: str, clock: ManualClock) -> None:
    cache = make_cache(combo, default_ttl=5)
    await cache.set("k", "v")
    clock.advance(6)
    assert await cache.get("k") is None


async def test_get_many_and_set_many(make_cache: MakeCache, combo: str) -> None:
    cache = make_cache(combo)
    await cache.set_many({"a": 1, "b": 2})
    await cache.set_many([("c", 3)])
    assert await cache.get_many(["a", "x", "c", "b"], default=-1) == [1, -1, 3, 2]


async def test_tags_invalidate_across_tiers(make_cache: MakeCache, combo: str) -> None:
    cache = make_cache(combo)
    await cache.set("u1:profile", "p", tags=["user:1"])
    await cache.set("u1:posts", "q", tags=["user:1", "feed"])
    await cache.set("u2:profile", "r", tags=["user:2"])
    await cache.invalidate_tags(["user:1"])
    assert await cache.get_many(["u1:profile", "u1:posts", "u2:profile"]) == [None, None, "r"]


async def test_clear_empties_every_tier(make_cache: MakeCache, combo: str) -> None:
    cache = make_cache(combo)
    await cache.set_many({"a": 1, "b": 2})
    await cache.clear()
    assert await cache.get_many(["a", "b"]) == [None, None]


async def test_get_or_load_loads_once_then_hits(make_cache: MakeCache, combo: str) -> None:
    cache = make_cache(combo)
    calls = 0

    async def loader() -> str:
        nonlocal calls
        calls += 1
        return "loaded"

    assert await cache.get_or_load("k", loader, ttl=60) == "loaded"
    assert await cache.get_or_load("k", loader, ttl=60) == "loaded"
    assert calls == 1
    s = cache.stats()
    assert s.loads == 1 and s.hits >= 1 and s.misses >= 1


async def test_thousand_concurrent_get_or_load_run_loader_once(
    make_cache: MakeCache, combo: str
) -> None:
    cache = make_cache(combo)
    calls = 0
    gate = asyncio.Event()

    async def loader() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return 7

    tasks = [asyncio.create_task(cache.get_or_load("hot", loader)) for _ in range(1000)]
    while calls == 0:
        await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert results == [7] * 1000
    assert calls == 1
    s = cache.stats()
    # every other caller either joined the load or, arriving after it, hit its result
    assert s.coalesced + s.hits >= 999


async def test_loader_error_reaches_every_waiter_and_nothing_is_cached(
    make_cache: MakeCache, combo: str
) -> None:
    cache = make_cache(combo)
    gate = asyncio.Event()

    async def failing() -> int:
        await gate.wait()
        raise RuntimeError("upstream down")

    tasks = [asyncio.create_task(cache.get_or_load("k", failing)) for _ in range(10)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert await cache.get("k") is None
    assert cache.stats().load_errors == 1


async def test_cancelled_caller_does_not_cancel_the_shared_load(
    make_cache: MakeCache, combo: str
) -> None:
    cache = make_cache(combo)
    gate = asyncio.Event()

    async def loader() -> str:
        await gate.wait()
        return "v"

    first = asyncio.create_task(cache.get_or_load("k", loader))
    second = asyncio.create_task(cache.get_or_load("k", loader))
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    assert await second == "v"
    assert await cache.get("k") == "v"


async def test_lower_tier_hit_is_promoted_with_remaining_ttl(
    make_cache: MakeCache, clock: ManualClock
) -> None:
    writer = make_cache("sqlite")
    await writer.set("k", "v", ttl=100, tags=["t"])
    clock.advance(40)
    reader = make_cache("memory+sqlite")
    assert await reader.get("k") == "v"
    l1 = reader.tiers[0]
    assert isinstance(l1, MemoryTier)
    assert l1.ttl_of("k") == pytest.approx(60, abs=0.5)
    # the promoted copy keeps its tag
    await reader.invalidate_tags(["t"])
    assert "k" not in l1
    assert reader.stats().tier("sqlite").hits == 1


async def test_l1_max_ttl_caps_l1_lifetime(make_cache: MakeCache, clock: ManualClock) -> None:
    cache = make_cache("memory+sqlite", l1_max_ttl=5)
    await cache.set("k", "v", ttl=100)
    l1 = cache.tiers[0]
    assert isinstance(l1, MemoryTier)
    assert l1.ttl_of("k") == pytest.approx(5)
    clock.advance(6)
    assert "k" not in l1
    assert await cache.get("k") == "v"  # still served from L3


async def test_early_refresh_reloads_hot_key_in_background(
    make_cache: MakeCache, combo: str, clock: ManualClock
) -> None:
    # rand() -> tiny U makes -ln(U) large: the hit right before expiry must refresh.
    cache = make_cache(combo, rand=lambda: 1e-9)
    calls = 0

    async def loader() -> int:
        nonlocal calls
        calls += 1
        clock.advance(0.5)  # the load takes 0.5 s
        return calls

    assert await cache.get_or_load("k", loader, ttl=60) == 1
    clock.advance(55)  # 5 s before expiry; delta * -ln(1e-9) is about 10 s
    # a hit returns the current value at once, and a background refresh starts
    assert await cache.get_or_load("k", loader, ttl=60) == 1
    await eventually(lambda: cache.stats().refreshes > 0)
    assert cache.stats().refreshes == 1
    assert await cache.get("k") == 2


async def test_no_early_refresh_far_from_expiry(make_cache: MakeCache, clock: ManualClock) -> None:
    cache = make_cache("memory", rand=lambda: 0.5)
    calls = 0

    async def loader() -> int:
        nonlocal calls
        calls += 1
        clock.advance(0.1)
        return calls

    await cache.get_or_load("k", loader, ttl=60)
    clock.advance(30)
    await cache.get_or_load("k", loader, ttl=60)
    await asyncio.sleep(0)
    assert calls == 1 and cache.stats().refreshes == 0


async def test_steady_hot_key_never_misses_synchronously(
    make_cache: MakeCache, clock: ManualClock
) -> None:
    import random

    rng = random.Random(7)
    cache = make_cache("memory+sqlite", rand=rng.random)

    async def loader() -> int:
        clock.advance(0.15)
        return 1

    await cache.get_or_load("hot", loader, ttl=10)
    # 100 s of traffic, a request every 20 ms: the key must be refreshed before every expiry.
    for _ in range(5000):
        clock.advance(0.02)
        await cache.get_or_load("hot", loader, ttl=10)
        await asyncio.sleep(0)
    assert cache.stats().refreshes >= 9
    assert cache.stats().loads == 1  # only the very first load was synchronous


async def test_warm_loads_hottest_keys_into_l1(make_cache: MakeCache, tmp_path: Path) -> None:
    first = make_cache("memory+sqlite")
    for i in range(20):
        await first.set(f"k{i}", i)
    for _ in range(5):
        for i in range(5):
            await first.get(f"k{i}")
    await first.aclose()  # flushes access counts to SQLite
    second = make_cache("memory+sqlite")
    assert await second.warm(5) == 5
    l1 = second.tiers[0]
    assert isinstance(l1, MemoryTier)
    assert all(f"k{i}" in l1 for i in range(5))
    assert len(l1) == 5


async def test_restart_of_process_keeps_sqlite_data(make_cache: MakeCache) -> None:
    first = make_cache("memory+sqlite")
    await first.set("persist", {"v": 1}, ttl=3600)
    await first.aclose()
    second = make_cache("memory+sqlite")
    assert await second.get("persist") == {"v": 1}


async def test_hooks_see_hits_misses_and_loads(make_cache: MakeCache) -> None:
    cache = make_cache("memory+sqlite")
    events: list[CacheEvent] = []
    cache.add_hook(events.append)

    async def loader() -> int:
        return 1

    await cache.get_or_load("k", loader)
    await cache.get("k")
    kinds = [e.kind for e in events]
    assert kinds == ["miss", "load", "hit"]
    assert events[-1].tier == "memory"


async def test_bad_inputs_raise_named_errors(make_cache: MakeCache) -> None:
    cache = make_cache("memory+sqlite")
    with pytest.raises(InvalidKeyError, match=r"key must be str or bytes, got int 5"):
        await cache.get(5)  # type: ignore[arg-type]
    with pytest.raises(InvalidTTLError, match=r"ttl must be a positive, finite number.*-1"):
        await cache.set("k", 1, ttl=-1)
    with pytest.raises(InvalidTTLError, match="ttl"):
        await cache.set("k", 1, ttl=0)
    with pytest.raises(CodecError, match="value cannot be encoded: object"):
        await cache.set("k", object())
    assert await cache.get("k") is None  # nothing half-written
    with pytest.raises(CacheError, match="loader must be a zero-argument callable"):
        await cache.get_or_load("k", 42)  # type: ignore[arg-type]

    def not_async() -> int:
        return 1

    with pytest.raises(CacheError, match="must return an awaitable"):
        await cache.get_or_load("k", not_async)  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError, match=r"tags\[1\]"):
        await cache.set("k", 1, tags=["ok", 3])  # type: ignore[list-item]


def test_bad_construction_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown cache tier URL scheme 'memcached'"):
        TieredCache(["memcached://x"])
    with pytest.raises(ConfigError, match=r"tiers\[1\] is a memory tier"):
        TieredCache([f"sqlite:///{tmp_path / 'x.db'}", "memory://"])
    with pytest.raises(ConfigError, match="tiers must name at least one tier"):
        TieredCache([])
    with pytest.raises(ConfigError, match="lock_lease must be a positive number, got 0"):
        TieredCache(["memory://"], lock_lease=0)
    with pytest.raises(InvalidTTLError, match="default_ttl"):
        TieredCache(["memory://"], default_ttl=-5)


class _FirstReadWaits(RedisTier):
    """A Redis tier whose first read answers only once ``gate`` is set."""

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__(url, prefix=prefix)
        self.first_read_done = asyncio.Event()
        self.gate = asyncio.Event()
        self._first = True

    async def read(self, key: str) -> Record | None:
        if not self._first:
            return await super().read(key)
        self._first = False
        rec = await super().read(key)
        self.first_read_done.set()
        await self.gate.wait()
        return rec


@pytest.mark.redis
async def test_a_miss_read_before_a_load_finished_does_not_load_again(
    redis_url: str, redis_prefix: str
) -> None:
    slow = _FirstReadWaits(redis_url, redis_prefix)
    cache = TieredCache(["memory://", slow])
    calls = 0

    async def loader() -> str:
        nonlocal calls
        calls += 1
        return "value"

    try:
        late = asyncio.create_task(cache.get_or_load("k", loader))
        await slow.first_read_done.wait()  # its read saw no value, and is held back
        assert await cache.get_or_load("k", loader) == "value"  # a whole load, stored
        slow.gate.set()  # now the late caller learns of its (stale) miss
        assert await late == "value"
        assert calls == 1
    finally:
        await cache.aclose()
