"""@cached on async and sync functions."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hotpath import ConfigError, KeyBuildError, TieredCache, cached


@pytest.fixture
async def cache(tmp_path: Path) -> AsyncIterator[TieredCache]:
    c = TieredCache(["memory://", f"sqlite:///{tmp_path / 'c.db'}"])
    yield c
    await c.aclose()


async def test_async_function_is_called_once_per_arguments(cache: TieredCache) -> None:
    calls: list[tuple[int, str]] = []

    @cached(cache, ttl=60)
    async def answer(x: int, unit: str = "s") -> str:
        calls.append((x, unit))
        return f"{x}{unit}"

    assert await answer(1) == "1s"
    assert await answer(1) == "1s"
    assert await answer(x=1, unit="s") == "1s"  # same call, spelled differently
    assert await answer(2, "m") == "2m"
    assert calls == [(1, "s"), (2, "m")]


async def test_async_concurrent_calls_share_one_run(cache: TieredCache) -> None:
    calls = 0
    gate = asyncio.Event()

    @cached(cache)
    async def slow(x: int) -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return x * 2

    tasks = [asyncio.create_task(slow(21)) for _ in range(200)]
    while cache.stats().coalesced + cache.stats().hits < 199:
        await asyncio.sleep(0)  # let every call reach the shared load
    gate.set()
    assert await asyncio.gather(*tasks) == [42] * 200
    assert calls == 1


async def test_invalidate_drops_one_call(cache: TieredCache) -> None:
    calls = 0

    @cached(cache)
    async def f(x: int) -> int:
        nonlocal calls
        calls += 1
        return x

    await f(1)
    await f(2)
    await f.invalidate(1)
    await f(1)
    await f(2)
    assert calls == 3


async def test_key_template_and_tags(cache: TieredCache) -> None:
    @cached(cache, key="user:{user_id}", tags=["user:{user_id}"])
    async def profile(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    assert profile.key(7) == "user:7"
    await profile(7)
    assert await cache.get("user:7") == {"id": 7}
    await cache.invalidate_tags(["user:7"])
    assert await cache.get("user:7") is None


async def test_key_callable_and_ignore(cache: TieredCache) -> None:
    @cached(cache, key=lambda q, client: f"q:{q}")
    async def search(q: str, client: object) -> str:
        return q.upper()

    assert await search("abc", object()) == "ABC"
    assert await cache.get("q:abc") == "ABC"

    @cached(cache, ignore=["client"])
    async def search2(q: str, client: object) -> str:
        return q

    assert search2.key("a", object()) == search2.key("a", object())


def test_sync_function_cached_without_event_loop(tmp_path: Path) -> None:
    cache = TieredCache(["memory://", f"sqlite:///{tmp_path / 'c.db'}"])
    calls = 0

    @cached(cache, ttl=60)
    def square(x: int) -> int:
        nonlocal calls
        calls += 1
        return x * x

    assert square(4) == 16
    assert square(4) == 16
    assert calls == 1
    square.invalidate(4)
    assert square(4) == 16
    assert calls == 2
    asyncio.run(cache.aclose())


def test_sync_function_threads_share_one_run(tmp_path: Path) -> None:
    cache = TieredCache(["memory://"])
    calls = 0
    gate = threading.Event()

    @cached(cache)
    def slow(x: int) -> int:
        nonlocal calls
        calls += 1
        gate.wait(5)
        return x

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(slow(3))) for _ in range(16)]
    for t in threads:
        t.start()
    while calls == 0:
        threading.Event().wait(0.001)
    gate.set()
    for t in threads:
        t.join(5)
    assert results == [3] * 16
    assert calls == 1
    asyncio.run(cache.aclose())


async def test_methods_leave_self_out_of_the_key(cache: TieredCache) -> None:
    class Service:
        def __init__(self) -> None:
            self.calls = 0

        @cached(cache)
        async def get(self, x: int) -> int:
            self.calls += 1
            return x

    a, b = Service(), Service()
    assert await a.get(1) == 1
    assert await b.get(1) == 1
    assert a.calls + b.calls == 1
    await a.get.invalidate(1)  # self is left out of the key: any instance names the entry
    await b.get(1)
    assert a.calls + b.calls == 2


async def test_unkeyable_argument_names_its_path(cache: TieredCache) -> None:
    @cached(cache)
    async def f(data: dict[str, object]) -> int:
        return 1

    with pytest.raises(KeyBuildError, match=r"arguments\['data'\]\['x'\] has no stable key"):
        await f({"x": object()})


def test_bad_decorator_arguments(cache: TieredCache) -> None:
    with pytest.raises(ConfigError, match="cache must be a TieredCache, got dict"):
        cached({})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="names 'nope', which is not a parameter"):

        @cached(cache, key="k:{nope}")
        async def f(x: int) -> int:
            return x

    with pytest.raises(ConfigError, match="ignore names 'zz'"):

        @cached(cache, ignore=["zz"])
        async def g(x: int) -> int:
            return x


async def test_every_spelling_of_a_call_shares_a_key(cache: TieredCache) -> None:
    @cached(cache)
    async def f(a: int, b: str = "x", *, flag: bool = False) -> int:
        return a

    same = {
        f.key(1),
        f.key(1, "x"),
        f.key(a=1),
        f.key(1, b="x"),
        f.key(b="x", a=1, flag=False),
    }
    assert len(same) == 1
    assert f.key(1, flag=True) not in same
    assert f.key(2) not in same


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "missing a required argument: 'a'"),
        ((1,), {"a": 2}, "multiple values for argument 'a'"),
        ((1,), {"zz": 2}, "unexpected keyword argument 'zz'"),
        ((1, "x", 3), {}, "too many positional arguments"),
    ],
)
async def test_calls_that_do_not_fit_the_signature_are_rejected(
    cache: TieredCache, args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    @cached(cache)
    async def f(a: int, b: str = "x", *, flag: bool = False) -> int:
        return a

    with pytest.raises(KeyBuildError, match=message):
        await f(*args, **kwargs)  # type: ignore[arg-type]


@pytest.mark.redis
async def test_sync_and_async_callers_share_a_redis_backed_cache(
    redis_url: str, redis_prefix: str
) -> None:
    """Sync calls run on the portal loop, async ones on ours: one Redis tier serves both."""
    cache = TieredCache(["memory://", f"{redis_url}?prefix={redis_prefix}"])
    calls: list[str] = []

    @cached(cache, key="sq:{x}")
    def square(x: int) -> int:
        calls.append(f"sync {x}")
        return x * x

    @cached(cache, key="sq:{x}")
    async def square_async(x: int) -> int:
        calls.append(f"async {x}")
        return x * x

    try:
        # a plain thread (no event loop) fills the cache through the portal
        result: list[int] = []
        worker = threading.Thread(target=lambda: result.append(square(3)))
        worker.start()
        await asyncio.to_thread(worker.join, 10)
        assert result == [9]
        # the async caller finds it in Redis (its own L1 copy was written by the portal)
        assert await square_async(3) == 9
        assert calls == ["sync 3"]
        # and the other way round
        assert await square_async(4) == 16
        assert await asyncio.to_thread(square, 4) == 16
        assert calls == ["sync 3", "async 4"]
    finally:
        await cache.aclose()


async def test_equal_values_of_different_types_keep_different_keys(cache: TieredCache) -> None:
    """1, True and 1.0 are equal in Python but must not share an entry (nor a memoized key)."""
    seen: list[object] = []

    @cached(cache)
    async def f(x: object) -> str:
        seen.append(x)
        return repr(x)

    for _ in range(2):
        assert [await f(1), await f(True), await f(1.0), await f((1,)), await f((True,))] == [
            "1",
            "True",
            "1.0",
            "(1,)",
            "(True,)",
        ]
    assert len({f.key(v) for v in (1, True, 1.0, (1,), (True,), 0.0, -0.0)}) == 7
    assert len(seen) == 5
