"""MemoryTier (L1) through its public API: values, expiry, bounds, tags, errors, threads."""

from __future__ import annotations

import math
import random
import threading

import pytest

from hotpath._clock import ManualClock
from hotpath._errors import ConfigError, InvalidKeyError, InvalidTTLError
from hotpath.cache._memory import ENTRY_OVERHEAD, MemoryTier, estimate_size
from hotpath.cache._record import Record


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def tier(clock: ManualClock) -> MemoryTier:
    return MemoryTier(max_entries=1000, clock=clock)


def test_set_get_delete(tier: MemoryTier) -> None:
    tier.set("k", {"a": 1})
    assert tier.get("k") == {"a": 1}
    assert "k" in tier
    assert len(tier) == 1
    assert tier.delete("k") is True
    assert tier.delete("k") is False
    assert tier.get("k") is None
    assert tier.get("k", "dflt") == "dflt"
    assert "k" not in tier


def test_values_are_stored_by_reference(tier: MemoryTier) -> None:
    value = [1, 2]
    tier.set("k", value)
    assert tier.get("k") is value


def test_bytes_key_names_the_same_entry_as_str(tier: MemoryTier) -> None:
    tier.set(b"caf\xc3\xa9", 1)
    assert tier.get("café") == 1


def test_ttl_expiry_follows_the_clock(tier: MemoryTier, clock: ManualClock) -> None:
    tier.set("k", "v", ttl=10)
    assert tier.ttl_of("k") == pytest.approx(10)
    clock.advance(9.5)
    assert tier.get("k") == "v"
    clock.advance(1)
    assert tier.get("k") is None
    assert "k" not in tier
    assert tier.ttl_of("k") is None
    assert tier.stats().expirations == 1


def test_expired_entries_are_reclaimed_by_later_writes(
    tier: MemoryTier, clock: ManualClock
) -> None:
    for i in range(100):
        tier.set(f"short{i}", i, ttl=5)
    clock.advance(7)
    tier.set("other", 1)  # a write advances the timer wheel
    assert len(tier) == 1
    stats = tier.stats()
    assert stats.expirations == 100
    assert stats.entries == 1


def test_rewrite_changes_or_removes_ttl(tier: MemoryTier, clock: ManualClock) -> None:
    tier.set("k", 1, ttl=5)
    tier.set("k", 2)
    clock.advance(3600)
    tier.set("x", 0)
    assert tier.get("k") == 2
    tier.set("k", 3, ttl=100)
    clock.advance(50)
    assert tier.ttl_of("k") == pytest.approx(50)


def test_entry_bound_holds_and_evictions_are_counted() -> None:
    tier = MemoryTier(max_entries=100, max_bytes=None)
    rng = random.Random(1)
    for i in range(5000):
        tier.set(f"k{rng.randrange(2000)}", i)
        tier.get(f"k{rng.randrange(2000)}")
        assert len(tier) <= 100
    stats = tier.stats()
    assert stats.entries == len(tier) <= 100
    assert stats.evictions > 0
    assert stats.sets == 5000


def test_byte_bound_holds_with_given_sizes() -> None:
    limit = 50_000
    tier = MemoryTier(max_entries=10_000, max_bytes=limit)
    for i in range(1000):
        tier.set_record(f"k{i}", Record(i), size=1000)
        assert tier.stats().bytes <= limit
    stats = tier.stats()
    per_entry = 1000 + len("k999") + ENTRY_OVERHEAD
    assert stats.entries <= limit // (1000 + ENTRY_OVERHEAD)
    assert stats.entries >= limit // per_entry - 1
    assert stats.evictions == 1000 - stats.entries


def test_byte_bound_holds_with_estimated_sizes() -> None:
    tier = MemoryTier(max_entries=10_000, max_bytes=200_000)
    for i in range(2000):
        tier.set(f"k{i}", {"text": "x" * 500, "n": i, "list": [1.5, None, b"zz"]})
        assert tier.stats().bytes <= 200_000
    assert 0 < len(tier) < 2000


def test_value_larger_than_max_bytes_is_not_stored() -> None:
    tier = MemoryTier(max_entries=10, max_bytes=1000)
    tier.set("big", "x")
    tier.set("big", "x" * 5000)
    assert tier.get("big") is None
    assert tier.stats().bytes == 0


def test_estimate_size_grows_with_content_and_is_bounded() -> None:
    assert estimate_size("x" * 1000) > estimate_size("x")
    assert estimate_size({"a": [1, 2, 3]}) > estimate_size({})
    huge = [list(range(100)) for _ in range(1000)]
    assert estimate_size(huge) > 100_000  # charged even beyond the walk budget
    assert estimate_size(object()) > 0


def test_tags_remove_only_tagged_entries(tier: MemoryTier) -> None:
    tier.set("a", 1, tags=["user:1"])
    tier.set("b", 2, tags=["user:1", "org:9"])
    tier.set("c", 3, tags=["user:2"])
    tier.set("d", 4)
    tier.remove_tags_sync(["user:1"])
    assert [tier.get(k) for k in "abcd"] == [None, None, 3, 4]
    tier.remove_tags_sync(["org:9", "user:2", "nope"])
    assert [tier.get(k) for k in "abcd"] == [None, None, None, 4]


def test_rewrite_with_new_tags_drops_the_old_link(tier: MemoryTier) -> None:
    tier.set("k", 1, tags=["old"])
    tier.set("k", 2, tags=["new"])
    tier.remove_tags_sync(["old"])
    assert tier.get("k") == 2
    tier.remove_tags_sync(["new"])
    assert tier.get("k") is None


def test_evicted_and_expired_entries_leave_the_tag_index(clock: ManualClock) -> None:
    tier = MemoryTier(max_entries=10, clock=clock)
    for i in range(200):
        tier.set(f"k{i}", i, ttl=5 if i % 2 else None, tags=[f"t{i % 3}"])
    clock.advance(10)
    tier.set("z", 0)
    tier.remove_tags_sync(["t0", "t1", "t2"])
    assert len(tier) == 1


def test_record_level_api(tier: MemoryTier, clock: ManualClock) -> None:
    rec = Record("v", clock.now() + 30, 0.5)
    tier.set_record("k", rec, ("t",))
    assert tier.peek_record("k") is rec
    assert tier.get_record("k") is rec
    assert tier.get_record("absent") is None
    tier.remove("k")
    assert tier.peek_record("k") is None
    tier.set_record("a", Record(1))
    tier.set_record("b", Record(2))
    tier.remove_keys(["a", "b", "zz"])
    assert len(tier) == 0
    tier.set_record("old", Record(1, clock.now() - 1))
    assert tier.peek_record("old") is None
    tier.set_record("c", Record(3))
    tier.clear_sync()
    assert len(tier) == 0


def test_peek_does_not_count(tier: MemoryTier) -> None:
    tier.set("k", 1)
    tier.peek_record("k")
    assert "k" in tier
    stats = tier.stats()
    assert (stats.hits, stats.misses) == (0, 0)


def test_stats_count_hits_misses_sets_deletes(tier: MemoryTier) -> None:
    tier.set("k", 1)
    for _ in range(100):
        tier.get("k")
    tier.get("nope")
    tier.delete("k")
    s = tier.stats()
    assert (s.name, s.healthy, s.hits, s.misses, s.sets, s.deletes) == (
        "memory",
        True,
        100,
        1,
        1,
        1,
    )
    assert s.latency.samples >= 1
    assert math.isclose(s.hit_ratio, 100 / 101)


async def test_async_interface_wraps_the_sync_one(tier: MemoryTier) -> None:
    await tier.write_many([("a", Record(1), ("t",)), ("b", Record(2), ())])
    assert [r.value if r else None for r in await tier.read_many(["a", "x", "b"])] == [1, None, 2]
    await tier.remove_tags(["t"])
    assert await tier.read("a") is None
    await tier.remove_many(["b"])
    assert await tier.read("b") is None
    await tier.write_many([(k, Record(k), ()) for k in ("cold", "warm", "hot")])
    await tier.add_hits({"hot": 50, "warm": 5, "cold": 1, "absent": 9})
    assert await tier.hottest(2) == ["hot", "warm"]
    await tier.clear()
    assert await tier.hottest(5) == []
    assert tier.healthy is True
    await tier.aclose()


@pytest.mark.parametrize("key", [1, None, 2.5, ["k"], b"\xff\xfe"])
def test_bad_keys_raise_naming_the_argument(tier: MemoryTier, key: object) -> None:
    with pytest.raises(InvalidKeyError, match="key"):
        tier.set(key, 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError, match="key"):
        tier.get(key)  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError, match="key"):
        tier.delete(key)  # type: ignore[arg-type]


@pytest.mark.parametrize("ttl", [0, -1, math.nan, math.inf, "10", True])
def test_bad_ttl_raises_naming_the_value(tier: MemoryTier, ttl: object) -> None:
    with pytest.raises(InvalidTTLError, match=r"ttl.*" + repr(ttl)[:3].replace("'", "")):
        tier.set("k", 1, ttl=ttl)  # type: ignore[arg-type]
    assert tier.get("k") is None


@pytest.mark.parametrize(
    ("tags", "match"), [("single", "tags"), ([""], r"tags\[0\]"), (["ok", 5], r"tags\[1\]")]
)
def test_bad_tags_raise_naming_the_argument(tier: MemoryTier, tags: object, match: str) -> None:
    with pytest.raises(InvalidKeyError, match=match):
        tier.set("k", 1, tags=tags)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_entries": 0}, "max_entries.*0"),
        ({"max_entries": "10"}, "max_entries.*'10'"),
        ({"max_entries": True}, "max_entries.*True"),
        ({"max_bytes": 0}, "max_bytes.*0"),
        ({"max_bytes": -5}, "max_bytes.*-5"),
        ({"max_bytes": 1.5}, r"max_bytes.*1\.5"),
    ],
)
def test_bad_constructor_args_raise_config_error(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        MemoryTier(**kwargs)  # type: ignore[arg-type]


def test_from_url_parses_params() -> None:
    tier = MemoryTier.from_url("memory://?max_entries=500&max_bytes=64KB")
    assert (tier.max_entries, tier.max_bytes) == (500, 64_000)
    assert MemoryTier.from_url("memory://").max_entries == 100_000
    assert MemoryTier.from_url("memory://?max_bytes=none").max_bytes is None
    assert "max_entries=500" in repr(tier)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("memory://?max_entries=lots", "max_entries.*'lots'"),
        ("memory://?max_entries=0", "max_entries.*'0'"),
        ("memory://?max_bytes=big", "max_bytes.*'big'"),
        ("memory://?colour=red", "colour"),
        ("memory://somehost", "somehost"),
        ("redis://x", "memory://"),
    ],
)
def test_bad_url_raises_config_error_naming_param_and_value(url: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        MemoryTier.from_url(url)


def test_threads_hammering_keep_the_invariants() -> None:
    tier = MemoryTier(max_entries=200, max_bytes=100_000)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for i in range(3000):
                key = f"k{rng.randrange(600)}"
                op = rng.random()
                if op < 0.5:
                    tier.get(key)
                elif op < 0.85:
                    tier.set(
                        key,
                        "x" * rng.randrange(100),
                        ttl=rng.choice([None, 30.0]),
                        tags=[f"t{i % 5}"],
                    )
                elif op < 0.95:
                    tier.delete(key)
                else:
                    tier.remove_tags_sync([f"t{rng.randrange(5)}"])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    stats = tier.stats()
    assert stats.entries == len(tier) <= 200
    assert stats.bytes <= 100_000
    assert len(tier.policy) == len(tier)
    live = [k for k in (f"k{i}" for i in range(600)) if k in tier]
    assert all(k in tier.policy for k in live)
