"""The behaviour every tier shares, run against memory, Redis and SQLite alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hotpath._clock import ManualClock
from hotpath.cache._record import Record
from hotpath.cache._tier import Tier
from hotpath.cache._urls import tier_from_url

TIERS = ["memory", "redis", "sqlite"]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(params=TIERS)
async def tier(
    request: pytest.FixtureRequest, clock: ManualClock, tmp_path: Path
) -> AsyncIterator[Tier]:
    kind = request.param
    if kind == "memory":
        url = "memory://?max_entries=1000"
    elif kind == "redis":
        redis_url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        url = f"{redis_url}?prefix={prefix}"
    else:
        url = f"sqlite:///{tmp_path / 'cache.db'}"
    t = tier_from_url(url, clock=clock)
    try:
        yield t
    finally:
        await t.aclose()


async def test_missing_key_reads_none(tier: Tier) -> None:
    assert await tier.read("absent") is None


async def test_write_then_read_round_trips_value_expiry_and_delta(
    tier: Tier, clock: ManualClock
) -> None:
    value = {"id": "chatcmpl-1", "choices": [{"text": "hi", "n": 1.5}], "raw": b"\x00\xff"}
    rec = Record(value, clock.now() + 60, 0.25)
    await tier.write("k", rec)
    got = await tier.read("k")
    assert got is not None
    assert got.value == value
    assert got.expires_at == pytest.approx(rec.expires_at, abs=0.01)
    assert got.delta == pytest.approx(0.25)


async def test_write_replaces_existing_value(tier: Tier) -> None:
    await tier.write("k", Record("one"))
    await tier.write("k", Record("two"))
    got = await tier.read("k")
    assert got is not None and got.value == "two"


async def test_record_without_expiry_never_expires(tier: Tier, clock: ManualClock) -> None:
    await tier.write("k", Record("v"))
    clock.advance(10 * 365 * 86400)
    got = await tier.read("k")
    assert got is not None and got.value == "v" and got.expires_at is None


async def test_expired_record_reads_none(tier: Tier, clock: ManualClock) -> None:
    await tier.write("k", Record("v", clock.now() + 5))
    clock.advance(4)
    assert await tier.read("k") is not None
    clock.advance(2)
    assert await tier.read("k") is None


async def test_already_expired_record_is_not_stored(tier: Tier, clock: ManualClock) -> None:
    await tier.write("k", Record("v", clock.now() - 1))
    assert await tier.read("k") is None


async def test_read_many_keeps_order_with_gaps(tier: Tier) -> None:
    await tier.write_many([("a", Record(1), ()), ("c", Record(3), ())])
    got = await tier.read_many(["a", "b", "c"])
    assert [r.value if r else None for r in got] == [1, None, 3]


async def test_remove_many_removes_only_named_keys(tier: Tier) -> None:
    await tier.write_many([(k, Record(k), ()) for k in "abc"])
    await tier.remove_many(["a", "b", "zz"])
    got = await tier.read_many(["a", "b", "c"])
    assert [r.value if r else None for r in got] == [None, None, "c"]


async def test_remove_tags_removes_every_tagged_entry(tier: Tier) -> None:
    await tier.write_many(
        [
            ("u1", Record(1), ("user:1",)),
            ("u1b", Record(2), ("user:1", "org:9")),
            ("u2", Record(3), ("user:2",)),
            ("plain", Record(4), ()),
        ]
    )
    await tier.remove_tags(["user:1"])
    got = await tier.read_many(["u1", "u1b", "u2", "plain"])
    assert [r.value if r else None for r in got] == [None, None, 3, 4]
    await tier.remove_tags(["org:9", "user:2"])
    assert await tier.read("u2") is None
    assert await tier.read("plain") is not None


async def test_rewrite_without_tag_is_not_removed_by_old_tag(tier: Tier) -> None:
    await tier.write("k", Record(1), ("t",))
    await tier.write("k", Record(2), ())
    await tier.remove_tags(["t"])
    got = await tier.read("k")
    # A rewrite may or may not drop the old tag link; either way the newest value must not
    # be served stale: it is either still there with value 2, or gone.
    assert got is None or got.value == 2


async def test_clear_removes_everything(tier: Tier) -> None:
    await tier.write_many([(k, Record(k), ("t",)) for k in "abc"])
    await tier.clear()
    assert await tier.read_many(["a", "b", "c"]) == [None, None, None]


async def test_unicode_and_odd_keys(tier: Tier) -> None:
    keys = ["", "ключ", "with space", "a:b:c", "emoji-\U0001f680", "x" * 1000]
    await tier.write_many([(k, Record(i), ()) for i, k in enumerate(keys)])
    got = await tier.read_many(keys)
    assert [r.value if r else None for r in got] == list(range(len(keys)))


async def test_stats_count_hits_misses_and_sets(tier: Tier) -> None:
    await tier.write("k", Record(1))
    await tier.read("k")
    await tier.read("nope")
    s = tier.stats()
    assert s.name == tier.name
    assert s.healthy is True
    assert s.sets >= 1 and s.hits >= 1 and s.misses >= 1
    assert s.errors == 0


async def test_hits_persist_and_rank_hottest(tier: Tier) -> None:
    await tier.write_many([(k, Record(k), ()) for k in ("cold", "warm", "hot")])
    await tier.add_hits({"hot": 50, "warm": 5, "cold": 1})
    await tier.add_hits({"warm": 1})
    hottest = await tier.hottest(2)
    if tier.name == "memory":
        assert len(hottest) <= 2  # L1 ranks by its own frequency estimate
    else:
        assert hottest == ["hot", "warm"]


async def test_only_missing_fills_gaps_but_never_overwrites(tier: Tier, clock: ManualClock) -> None:
    await tier.write("live", Record("newer"))
    await tier.write("dying", Record("old", clock.now() + 1))
    clock.advance(2)
    await tier.write_many(
        [
            ("live", Record("stale"), ()),
            ("absent", Record("filled"), ()),
            ("dying", Record("fresh"), ()),
        ],
        only_missing=True,
    )
    got = await tier.read_many(["live", "absent"])
    assert [r.value if r else None for r in got] == ["newer", "filled"]
    if tier.name != "redis":  # Redis expires by its own clock, not the injected one
        dying = await tier.read("dying")
        assert dying is not None and dying.value == "fresh"
