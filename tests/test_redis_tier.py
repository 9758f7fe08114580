"""RedisTier beyond the shared tier contract: URLs, TTLs, tags, faults, locks, pub/sub."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from hotpath._clock import ManualClock
from hotpath._errors import CodecError, ConfigError, InvalidKeyError, InvalidTTLError
from hotpath.cache import _redis
from hotpath.cache._record import Record
from hotpath.cache._redis import RedisTier
from hotpath.cache._urls import tier_from_url
from hotpath.cache._watchdog import Watchdog
from redis_server import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def tier(redis_url: str, redis_prefix: str, clock: ManualClock) -> AsyncIterator[RedisTier]:
    t = RedisTier(redis_url, prefix=redis_prefix, clock=clock)
    try:
        yield t
    finally:
        await t.aclose()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


# -- URLs and construction ------------------------------------------------------------


def test_from_url_reads_hotpath_params() -> None:
    t = RedisTier.from_url(
        "redis://127.0.0.1:6379/2?prefix=app%3A&timeout=0.5&connect_timeout=0.1&max_connections=8"
    )
    assert (t.prefix, t.timeout, t.connect_timeout, t.max_connections) == ("app:", 0.5, 0.1, 8)
    assert t.url == "redis://127.0.0.1:6379/2"


def test_from_url_passes_db_on_for_unix_sockets() -> None:
    t = RedisTier.from_url("unix:///tmp/redis.sock?db=3&prefix=x:")
    assert t.url == "unix:///tmp/redis.sock?db=3"
    assert t.prefix == "x:"


@pytest.mark.parametrize("url", ["redis://h/0", "rediss://h:6380/0", "unix:///tmp/r.sock"])
def test_tier_from_url_picks_redis_for_its_schemes(url: str) -> None:
    assert isinstance(tier_from_url(url), RedisTier)


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("redis://h/0?pool_size=3", "pool_size"),
        ("redis://h/0?timeout=abc", "timeout"),
        ("redis://h/0?timeout=0", "timeout"),
        ("redis://h/0?connect_timeout=-1", "connect_timeout"),
        ("redis://h/0?max_connections=0", "max_connections"),
        ("redis://h/0?max_connections=many", "max_connections"),
        ("redis://h/0?prefix=", "prefix"),
        ("redis://h/0?prefix=a&prefix=b", "prefix"),
    ],
)
def test_bad_url_params_name_the_param(url: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        RedisTier.from_url(url)


def test_unknown_scheme_is_rejected() -> None:
    with pytest.raises(ConfigError, match="redis://"):
        RedisTier.from_url("http://h/0")


def test_constructor_sends_hotpath_params_to_from_url() -> None:
    with pytest.raises(ConfigError, match="from_url"):
        RedisTier("redis://h/0?prefix=x:")


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"prefix": ""}, "prefix"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"connect_timeout": True}, "connect_timeout"),
        ({"max_connections": 0}, "max_connections"),
        ({"base_backoff": 2.0, "max_backoff": 1.0}, "max_backoff"),
        ({"codec": "msgpack"}, "codec"),
    ],
)
def test_bad_constructor_arguments_are_rejected(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        RedisTier("redis://h/0", **kwargs)  # type: ignore[arg-type]


def test_repr_and_errors_never_show_the_password() -> None:
    t = RedisTier.from_url("redis://alice:s3cret@cache.internal:6379/0?prefix=p:")
    assert "s3cret" not in repr(t)
    assert "alice" in repr(t)
    assert "***" in repr(t)
    t2 = RedisTier.from_url("unix:///tmp/r.sock?password=s3cret")
    assert "s3cret" not in repr(t2)
    with pytest.raises(ConfigError) as info:
        RedisTier.from_url("redis://alice:s3cret@h/0?bogus=1")
    assert "s3cret" not in str(info.value)
    assert "bogus" in str(info.value)


async def test_construction_connects_to_nothing() -> None:
    t = RedisTier("redis://nonexistent.invalid:1/0")
    assert t.healthy
    assert t._clients == {}
    await t.aclose()


# -- values, TTLs, tags -----------------------------------------------------------------


async def test_convenience_api_round_trips(tier: RedisTier) -> None:
    await tier.set("a", {"x": 1}, ttl=60)
    await tier.set(b"b", [1, 2])
    await tier.set_many({"c": "C", "d": None}, ttl=5)
    assert await tier.get("a") == {"x": 1}
    assert await tier.get("b") == [1, 2]
    assert await tier.get("nope", default="dflt") == "dflt"
    assert await tier.get_many(["c", "d", "e"], default=0) == ["C", None, 0]
    assert await tier.delete("a") is True
    assert await tier.delete("a") is False
    assert await tier.get("a") is None


async def test_convenience_api_rejects_bad_input(tier: RedisTier) -> None:
    with pytest.raises(InvalidKeyError):
        await tier.get(12)  # type: ignore[arg-type]
    with pytest.raises(InvalidTTLError):
        await tier.set("k", 1, ttl=0)
    with pytest.raises(InvalidKeyError):
        await tier.set("k", 1, tags="single")
    with pytest.raises(InvalidKeyError, match="UTF-8"):
        await tier.read("lone surrogate \ud800")
    with pytest.raises(InvalidKeyError, match="UTF-8"):
        await tier.write("k", Record(1), ("\udfff",))
    assert tier.stats().errors == 0


async def test_ttl_in_redis_matches_the_record(
    tier: RedisTier, raw: aioredis.Redis, redis_prefix: str
) -> None:
    await tier.set("ttl", "v", ttl=30)
    await tier.set("forever", "v")
    pttl = await raw.pttl(f"{redis_prefix}v:ttl")
    assert 29_000 < pttl <= 30_000
    assert await raw.pttl(f"{redis_prefix}v:forever") == -1


async def test_writing_an_expired_record_removes_the_old_value(
    tier: RedisTier, clock: ManualClock
) -> None:
    await tier.set("k", "old")
    await tier.write("k", Record("new", clock.now() - 1))
    assert await tier.read("k") is None


async def test_tag_sets_live_as_long_as_their_longest_member(
    tier: RedisTier, raw: aioredis.Redis, redis_prefix: str
) -> None:
    t = f"{redis_prefix}t:"
    await tier.set("a", 1, ttl=10, tags=["short-then-long"])
    await tier.set("b", 1, ttl=100, tags=["short-then-long"])
    assert 99_000 < await raw.pttl(t + "short-then-long") <= 100_000
    await tier.set("c", 1, ttl=100, tags=["long-then-short"])
    await tier.set("d", 1, ttl=10, tags=["long-then-short"])
    assert 99_000 < await raw.pttl(t + "long-then-short") <= 100_000
    await tier.set("e", 1, ttl=10, tags=["then-forever"])
    await tier.set("f", 1, tags=["then-forever"])
    assert await raw.pttl(t + "then-forever") == -1
    await tier.set("g", 1, tags=["forever-then-ttl"])
    await tier.set("h", 1, ttl=10, tags=["forever-then-ttl"])
    assert await raw.pttl(t + "forever-then-ttl") == -1


async def test_remove_tags_removes_entries_and_the_tag_set(
    tier: RedisTier, raw: aioredis.Redis, redis_prefix: str
) -> None:
    await tier.set_many({f"k{i}": i for i in range(1200)}, ttl=60, tags=["big"])
    await tier.set("other", 1, tags=["small"])
    await tier.remove_tags(["big"])
    assert await tier.get_many(["k0", "k599", "k1199", "other"]) == [None, None, None, 1]
    assert await raw.exists(f"{redis_prefix}t:big") == 0
    assert tier.stats().deletes == 1200


async def test_user_keys_cannot_collide_with_internal_keys(tier: RedisTier) -> None:
    await tier.set("t:mytag", "value named like a tag set", tags=["mytag"])
    await tier.set("h", "value named like the hits set")
    await tier.add_hits({"h": 3})
    assert await tier.get("t:mytag") == "value named like a tag set"
    assert await tier.get("h") == "value named like the hits set"
    await tier.remove_tags(["mytag"])
    assert await tier.get("t:mytag") is None
    assert await tier.get("h") == "value named like the hits set"


async def test_prefixes_isolate_tiers(redis_url: str, redis_prefix: str) -> None:
    one = RedisTier(redis_url, prefix=redis_prefix + "one:")
    two = RedisTier(redis_url, prefix=redis_prefix + "two:")
    try:
        await one.set("k", "one")
        await two.set("k", "two")
        assert await one.get("k") == "one"
        assert await two.get("k") == "two"
        await one.clear()
        assert await one.get("k") is None
        assert await two.get("k") == "two"
    finally:
        await one.aclose()
        await two.aclose()


async def test_clear_touches_only_its_own_prefix_and_keeps_locks(
    redis_url: str, redis_prefix: str, raw: aioredis.Redis
) -> None:
    # Glob metacharacters in the prefix must not widen SCAN MATCH to a neighbour.
    tier = RedisTier(redis_url, prefix=redis_prefix + "a*[b]?:")
    try:
        await raw.set(redis_prefix + "aXbY:v:k", b"neighbour")
        await raw.set(redis_prefix + "foreign", b"foreign")
        await tier.set_many({f"k{i}": i for i in range(2500)}, tags=["t"])
        await tier.add_hits({"k1": 1})
        assert await tier.try_lock("job", "tok", 60) is True
        await tier.clear()
        assert await tier.get_many(["k0", "k2499"]) == [None, None]
        assert await raw.get(redis_prefix + "aXbY:v:k") == b"neighbour"
        assert await raw.get(redis_prefix + "foreign") == b"foreign"
        assert await tier.is_locked("job") is True
        leftovers = [k async for k in raw.scan_iter(match=f"{redis_prefix}a\\*\\[b\\]\\?:*")]
        assert leftovers == [f"{redis_prefix}a*[b]?:l:job".encode()]
    finally:
        await tier.aclose()


async def test_corrupt_bytes_read_as_a_miss_with_a_warning(
    tier: RedisTier, raw: aioredis.Redis, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    await raw.set(f"{redis_prefix}v:bad", b"\x00garbage written by someone else")
    with caplog.at_level(logging.WARNING, logger="hotpath.cache"):
        assert await tier.read("bad") is None
        assert await tier.read_many(["bad", "absent"]) == [None, None]
    assert any("'bad'" in r.getMessage() for r in caplog.records)
    stats = tier.stats()
    assert stats.healthy
    assert stats.errors == 0
    assert stats.misses == 3


async def test_unencodable_value_raises_and_writes_nothing(tier: RedisTier) -> None:
    with pytest.raises(CodecError):
        await tier.set("k", object())
    with pytest.raises(CodecError):
        await tier.write_many([("good", Record(1), ()), ("bad", Record({1, 2}), ())])
    assert await tier.read_many(["k", "good"]) == [None, None]
    assert tier.stats().errors == 0


async def test_expired_by_the_clock_reads_as_a_miss(tier: RedisTier, clock: ManualClock) -> None:
    await tier.set("k", 1, ttl=10)
    clock.advance(11)  # Redis' own clock has not moved: the envelope's expiry decides
    assert await tier.get("k") is None
    assert tier.stats().expirations == 1


async def test_hits_are_trimmed_and_hottest_skips_dead_keys(
    tier: RedisTier, raw: aioredis.Redis, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_redis, "_MAX_HOT", 3)
    monkeypatch.setattr(_redis, "_TRIM_EVERY", 1)
    await tier.set_many({k: k for k in ("a", "b", "c", "d")})
    await tier.add_hits({"a": 40, "b": 30, "c": 20, "d": 10})
    assert await raw.zcard(f"{redis_prefix}h") == 3
    await tier.delete("a")
    assert await tier.hottest(5) == ["b", "c"]
    assert await raw.zscore(f"{redis_prefix}h", "a") is None  # the dead key's count went too
    assert await tier.hottest(0) == []


async def test_stats_report_latency_and_unknown_sizes(tier: RedisTier) -> None:
    await tier.set("k", 1)
    await tier.get("k")
    s = tier.stats()
    assert s.name == "redis"
    assert s.entries == -1
    assert s.bytes == -1
    assert s.latency.samples == 2
    assert s.latency.p50_us > 0


async def test_a_closed_tier_answers_misses(redis_url: str, redis_prefix: str) -> None:
    t = RedisTier(redis_url, prefix=redis_prefix)
    await t.set("k", 1)
    await t.aclose()
    assert await t.get("k") is None


# -- faults -------------------------------------------------------------------------------


async def test_dead_redis_misses_fast_then_recovers_after_backoff(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock()
    tier = RedisTier(redis_server.url, prefix="fault:", clock=clock)
    try:
        await tier.set("k", "v")
        assert await tier.get("k") == "v"
        redis_server.stop()

        t0 = time.perf_counter()
        assert await tier.get("k") is None
        await tier.set("k2", "v2")  # bypassed: no-op
        assert time.perf_counter() - t0 < 1.0
        s = tier.stats()
        assert s.healthy is False
        assert s.errors == 1

        calls = 0
        real_client = tier._client

        def spy() -> tuple[aioredis.Redis, asyncio.Semaphore, Watchdog]:
            nonlocal calls
            calls += 1
            return real_client()

        monkeypatch.setattr(tier, "_client", spy)
        clock.advance(0.4)  # inside the 0.5 s backoff: nothing may reach Redis
        assert await tier.read_many(["k", "k2"]) == [None, None]
        await tier.set("k3", 3)
        await tier.remove_many(["k"])
        await tier.remove_tags(["t"])
        await tier.add_hits({"k": 1})
        await tier.clear()
        assert await tier.hottest(3) == []
        assert await tier.try_lock("l", "tok", 1) is None
        assert await tier.is_locked("l") is None
        assert await tier.publish(b"x") is False
        assert calls == 0
        assert tier.stats().errors == 1

        clock.advance(0.2)  # backoff over: one probe, still dead, backoff doubles to 1 s
        t0 = time.perf_counter()
        assert await tier.get("k") is None
        assert time.perf_counter() - t0 < 1.0
        assert calls == 1
        assert tier.stats().errors == 2

        redis_server.start()
        clock.advance(0.5)
        assert await tier.get("k") is None
        assert calls == 1  # still inside the doubled backoff
        clock.advance(0.6)
        await tier.set("k", "back")
        assert await tier.get("k") == "back"
        assert tier.healthy
        assert tier.stats().healthy
    finally:
        await tier.aclose()


async def test_a_hung_server_is_bounded_by_the_timeout() -> None:
    """A server that accepts connections but never answers costs at most the deadline."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    tier = RedisTier(f"redis://127.0.0.1:{port}/0", timeout=0.1, connect_timeout=0.1)
    try:
        t0 = time.perf_counter()
        assert await tier.get("k") is None
        assert time.perf_counter() - t0 < 0.5
        assert tier.healthy is False
        assert tier.stats().errors == 1
    finally:
        await tier.aclose()
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


# -- locks ----------------------------------------------------------------------------------


async def test_locks_contend_expire_by_lease_and_need_the_right_token(
    tier: RedisTier, raw: aioredis.Redis, redis_prefix: str
) -> None:
    assert await tier.is_locked("job") is False
    assert await tier.try_lock("job", "me", 5.0) is True
    assert 4_000 < await raw.pttl(f"{redis_prefix}l:job") <= 5_000
    assert await tier.try_lock("job", "you", 5.0) is False
    await tier.unlock("job", "you")
    assert await tier.is_locked("job") is True
    await tier.unlock("job", "me")
    assert await tier.is_locked("job") is False
    assert await tier.try_lock("job", "you", 0.5) is True
    assert 0 < await raw.pttl(f"{redis_prefix}l:job") <= 500


async def test_lock_arguments_are_checked(tier: RedisTier) -> None:
    with pytest.raises(InvalidTTLError):
        await tier.try_lock("job", "me", 0)
    with pytest.raises(InvalidKeyError):
        await tier.try_lock(3, "me", 1)  # type: ignore[arg-type]


# -- pub/sub -----------------------------------------------------------------------------------


async def test_pubsub_delivers_and_resubscribes_after_a_restart(
    redis_server: RedisServer,
) -> None:
    url = f"{redis_server.url}?prefix=ps:"
    pub, sub = RedisTier.from_url(url), RedisTier.from_url(url)
    got: asyncio.Queue[bytes] = asyncio.Queue()
    resets = 0
    reset = asyncio.Event()

    def on_reset() -> None:
        nonlocal resets
        resets += 1
        reset.set()

    try:
        assert await sub.wait_subscribed(0.01) is False
        sub.subscribe(lambda _: None, on_reset)
        sub.subscribe(got.put_nowait, on_reset)  # the second call replaces the handlers
        assert await sub.wait_subscribed(5)
        assert await pub.publish(b"one")
        assert await asyncio.wait_for(got.get(), 5) == b"one"
        assert resets == 0

        redis_server.restart()
        await asyncio.wait_for(reset.wait(), 10)
        assert await sub.wait_subscribed(5)
        assert await pub.publish(b"two")
        assert await asyncio.wait_for(got.get(), 5) == b"two"
        assert resets == 1

        await sub.unsubscribe()
        assert await sub.wait_subscribed(0.01) is False
    finally:
        await pub.aclose()
        await sub.aclose()


async def test_a_failing_handler_does_not_stop_the_subscription(
    redis_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    tier = RedisTier(redis_url, prefix=redis_prefix)
    got: asyncio.Queue[bytes] = asyncio.Queue()

    def handler(payload: bytes) -> None:
        if payload == b"boom":
            raise RuntimeError("handler bug")
        got.put_nowait(payload)

    try:
        tier.subscribe(handler, lambda: None)
        assert await tier.wait_subscribed(5)
        with caplog.at_level(logging.ERROR, logger="hotpath.cache"):
            assert await tier.publish(b"boom")
            assert await tier.publish(b"ok")
            assert await asyncio.wait_for(got.get(), 5) == b"ok"
        assert any("handler" in r.getMessage() for r in caplog.records)
    finally:
        await tier.aclose()


# -- event loops and sockets ------------------------------------------------------------------


async def test_works_from_several_event_loops(redis_url: str, redis_prefix: str) -> None:
    tier = RedisTier(redis_url, prefix=redis_prefix)
    await tier.set("a", 1)

    def in_another_loop() -> object:
        async def main() -> object:
            await tier.set("b", 2)
            value = await tier.get("a")
            await tier.release_loop()
            return value

        return asyncio.run(main())

    try:
        assert await asyncio.to_thread(in_another_loop) == 1
        assert await tier.get("b") == 2
        assert len(tier._clients) == 1
    finally:
        await tier.aclose()


async def test_aclose_closes_clients_of_other_running_loops(
    redis_url: str, redis_prefix: str
) -> None:
    tier = RedisTier(redis_url, prefix=redis_prefix)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        fut = asyncio.run_coroutine_threadsafe(tier.set("x", 1), loop)
        await asyncio.wrap_future(fut)
        assert await tier.get("x") == 1
        assert len(tier._clients) == 2
        await tier.aclose()
        assert tier._clients == {}
        assert len(tier._closing) == 1
        await asyncio.wrap_future(tier._closing[0])
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.fixture
def unix_redis() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not on PATH")
    workdir = Path(tempfile.mkdtemp(prefix="hotpath-redis-unix-"))
    sock = workdir / "redis.sock"
    proc = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", str(sock), "--save", "", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        yield f"unix://{sock}?db=0"
    finally:
        proc.kill()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


async def test_unix_socket_url(unix_redis: str) -> None:
    tier = RedisTier.from_url(unix_redis + "&prefix=u:")
    try:
        await tier.set("k", "over a unix socket")
        assert await tier.get("k") == "over a unix socket"
    finally:
        await tier.aclose()
