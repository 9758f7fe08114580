"""The W-TinyLFU policy, sketch and timer wheel as plain state machines (no store, no clock)."""

from __future__ import annotations

import random

import pytest

from hotpath.cache._policy import WTinyLFU
from hotpath.cache._sketch import FrequencySketch
from hotpath.cache._timerwheel import TimerWheel


def drive(policy: WTinyLFU, keys: list[str]) -> int:
    """Feed a request stream (insert on miss); return the number of hits."""
    hits = 0
    for key in keys:
        if key in policy:
            policy.access(key)
            hits += 1
        else:
            policy.insert(key)
    return hits


def test_sketch_counts_and_saturates_at_15() -> None:
    sketch = FrequencySketch(1000)
    idx = sketch.indexes("k")
    assert sketch.estimate(idx) == 0
    for _ in range(3):
        sketch.increment(idx)
    assert sketch.estimate(idx) == 3
    for _ in range(40):
        sketch.increment(idx)
    assert sketch.estimate(idx) == 15


def test_sketch_halves_counters_after_a_sample() -> None:
    sketch = FrequencySketch(10, sample_factor=10)
    hot = sketch.indexes("hot")
    for _ in range(12):
        sketch.increment(hot)
    others = [sketch.indexes(f"o{i}") for i in range(sketch.sample_size)]
    before = sketch.resets
    for idx in others:
        sketch.increment(idx)
    assert sketch.resets > before
    assert sketch.estimate(hot) < 12


def test_policy_never_tracks_more_than_capacity() -> None:
    policy = WTinyLFU(100, seed=1)
    rng = random.Random(1)
    for _ in range(5000):
        key = str(rng.randrange(1000))
        if key in policy:
            policy.access(key)
        else:
            evicted = policy.insert(key)
            assert all(k not in policy for k in evicted)
        assert len(policy) <= 100


def test_insert_returns_evicted_keys_and_remove_forgets() -> None:
    policy = WTinyLFU(2, seed=1)
    assert policy.insert("a") == []
    assert policy.insert("b") == []
    evicted = policy.insert("c")
    assert len(evicted) == 1
    assert len(policy) == 2
    survivor = next(k for k in "abc" if k in policy and k not in evicted)
    assert policy.remove(survivor) is True
    assert policy.remove(survivor) is False
    assert len(policy) == 1


def test_hot_set_survives_a_scan_larger_than_the_cache() -> None:
    policy = WTinyLFU(100, adaptive=False, seed=1)
    hot = [f"hot{i}" for i in range(50)]
    for _ in range(20):
        drive(policy, hot)
    drive(policy, [f"scan{i}" for i in range(1000)])  # one-off keys, 10x the cache
    assert sum(k in policy for k in hot) >= 45


def test_loop_larger_than_cache_still_hits() -> None:
    policy = WTinyLFU(100, seed=1)
    loop = [f"k{i}" for i in range(150)]
    drive(policy, loop * 5)
    hits = drive(policy, loop * 20)
    assert hits / (150 * 20) > 0.3  # LRU would hit nothing


def test_window_grows_on_a_recency_friendly_stream() -> None:
    # A working set that drifts: each key is hot for a short while, then never again.
    policy = WTinyLFU(200, seed=1)
    start = policy.window_capacity
    rng = random.Random(3)
    stream: list[str] = []
    for base in range(0, 60_000, 20):
        live = [f"k{base + j}" for j in range(150)]
        stream.extend(rng.choice(live) for _ in range(40))
    drive(policy, stream)
    assert policy.window_capacity > start * 5


def test_window_shrinks_on_a_frequency_stream() -> None:
    # A fixed hot set that fits only if the window is small, mixed with one-off keys.
    policy = WTinyLFU(200, window=0.5, seed=1)
    start = policy.window_capacity
    rng = random.Random(4)
    hot = [f"hot{i}" for i in range(180)]
    stream = [rng.choice(hot) if rng.random() < 0.6 else f"once{i}" for i in range(100_000)]
    drive(policy, stream)
    assert policy.window_capacity < start / 2


def test_a_loop_longer_than_the_cache_keeps_the_window_small() -> None:
    # Rejected loop keys come back only after leaving the short ghost lists.
    policy = WTinyLFU(100, seed=1)
    loop = [f"k{i}" for i in range(180)]
    drive(policy, loop * 50)
    assert policy.window_capacity <= 5


def test_ghost_lists_stay_bounded() -> None:
    policy = WTinyLFU(100, ghost=0.1, seed=1)
    drive(policy, [f"once{i}" for i in range(5000)])
    assert len(policy._window_ghosts) <= 10
    assert len(policy._main_ghosts) <= 10


def test_sketch_indexes_share_one_cache_line() -> None:
    sketch = FrequencySketch(10_000)
    for i in range(100):
        idx = sketch.indexes(f"key{i}")
        assert len(idx) == 2
        assert len({j // 64 for j in idx}) == 1
        assert [j % 64 // 32 for j in idx] == [0, 1]


def test_hottest_ranks_by_frequency() -> None:
    policy = WTinyLFU(100, seed=1)
    for key, n in (("cold", 1), ("warm", 4), ("hot", 9)):
        policy.insert(key)
        for _ in range(n):
            policy.access(key)
    assert policy.hottest(2) == ["hot", "warm"]
    assert policy.hottest(0) == []


def test_evict_empties_in_order_and_then_returns_none() -> None:
    policy = WTinyLFU(10, seed=1)
    for k in "abc":
        policy.insert(k)
    assert {policy.evict(), policy.evict(), policy.evict()} == {"a", "b", "c"}
    assert policy.evict() is None
    assert len(policy) == 0


@pytest.mark.parametrize("capacity", [0, -1, True, 1.5])
def test_policy_rejects_bad_capacity(capacity: object) -> None:
    with pytest.raises(ValueError, match="capacity"):
        WTinyLFU(capacity)  # type: ignore[arg-type]


def test_timer_wheel_expires_at_the_right_time() -> None:
    wheel = TimerWheel(1000.0)
    wheel.schedule("soon", 1005.5)
    wheel.schedule("hour", 1000.0 + 3600)
    wheel.schedule("year", 1000.0 + 365 * 86400)
    assert wheel.advance(1005.0) == []
    assert wheel.advance(1006.0) == ["soon"]
    assert wheel.advance(1000.0 + 3599) == []
    assert wheel.advance(1000.0 + 3601) == ["hour"]
    assert wheel.advance(1000.0 + 364 * 86400) == []
    assert wheel.advance(1000.0 + 366 * 86400) == ["year"]
    assert len(wheel) == 0


def test_timer_wheel_reschedule_and_cancel() -> None:
    wheel = TimerWheel(0.0)
    wheel.schedule("a", 10.0)
    wheel.schedule("a", 100.0)
    wheel.schedule("b", 10.0)
    wheel.cancel("b")
    wheel.cancel("absent")
    assert wheel.advance(50.0) == []
    assert wheel.advance(101.0) == ["a"]


def test_timer_wheel_random_deadlines_all_expire_exactly_once() -> None:
    rng = random.Random(5)
    wheel = TimerWheel(0.0)
    deadlines = {f"k{i}": rng.uniform(0.1, 500_000) for i in range(2000)}
    for key, deadline in deadlines.items():
        wheel.schedule(key, deadline)
    now = 0.0
    seen: dict[str, float] = {}
    while now < 600_000:
        now += rng.uniform(0.5, 3000)
        for key in wheel.advance(now):
            assert key not in seen
            assert deadlines[key] <= now
            seen[key] = now
    assert seen.keys() == deadlines.keys()
    # Expired no later than the wheel's granularity after the deadline at the step it was due.
    assert len(wheel) == 0
