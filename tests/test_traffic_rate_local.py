"""GCRA rate limits: the contract every rate limiter keeps (run here against
LocalRateLimiter, and by test_traffic_rate_redis against Redis), then what only
the in-process limiter does (no drift over 1,000 periods, key bound, sync core)."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import pytest

from hotpath._clock import ManualClock
from hotpath._errors import ConfigError
from hotpath.traffic._gcra import (
    Decision,
    Limit,
    LocalRateLimiter,
    Rate,
    RateLimiterStats,
    judge,
)


class RateLimiter(Protocol):
    async def acquire(self, limits: Sequence[Limit], *, max_wait: float = 0.0) -> Decision: ...
    async def settle(self, key: str, rate: Rate, delta: float) -> None: ...
    @property
    def stats(self) -> RateLimiterStats: ...
    async def aclose(self) -> None: ...


# 8 per second: the interval (0.125 s) is exact in binary, so a clock stepping onto a
# slot lands on it exactly whatever the backend's time base.
EIGHT = Rate(limit=8, period=1.0, burst=4)
T = 0.125


def max_in_window(times: Sequence[float], costs: Sequence[float], period: float) -> float:
    """The most units whose times fall in one closed window of ``period`` seconds."""
    best = 0.0
    for i, start in enumerate(times):
        total = sum(c for t, c in zip(times[i:], costs[i:], strict=True) if t <= start + period)
        best = max(best, total)
    return best


# -- values -----------------------------------------------------------------------------


def test_rate_derives_interval_capacity_and_tolerance() -> None:
    r = Rate(limit=600, period=60.0, burst=50)
    assert (r.interval, r.capacity, r.tolerance) == (0.1, 50.0, 5.0)
    default = Rate(limit=10)
    assert (default.period, default.burst, default.capacity) == (60.0, None, 10.0)
    assert repr(default) == "Rate(limit=10.0, period=60.0, burst=None)"
    assert Rate(limit=10) == Rate(limit=10.0, period=60)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": 0}, "Rate.limit must be a number > 0, got 0"),
        ({"limit": -5}, "Rate.limit must be a number > 0, got -5"),
        ({"limit": math.nan}, "Rate.limit must be a number > 0, got nan"),
        ({"limit": math.inf}, "Rate.limit must be a finite number > 0, got inf"),
        ({"limit": "10"}, "Rate.limit must be a number > 0, got '10'"),
        ({"limit": True}, "Rate.limit must be a number > 0, got True"),
        ({"limit": 10, "period": 0}, "Rate.period must be a number > 0, got 0"),
        ({"limit": 10, "period": -1.5}, "Rate.period must be a number > 0, got -1.5"),
        ({"limit": 10, "burst": 0}, "Rate.burst must be a number > 0, got 0"),
        ({"limit": 10, "burst": math.nan}, "Rate.burst must be a number > 0, got nan"),
    ],
)
def test_rate_rejects_bad_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Rate(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", EIGHT, 1), "Limit.key must be a non-empty string, got ''"),
        ((b"k", EIGHT, 1), "Limit.key must be a non-empty string, got b'k'"),
        (("k", 8, 1), "Limit.rate must be a Rate, got int 8"),
        (("k", EIGHT, -1), "Limit.cost must be a number >= 0, got -1"),
        (("k", EIGHT, math.nan), "Limit.cost must be a number >= 0, got float nan"),
        (("k", EIGHT, "1"), "Limit.cost must be a number >= 0, got str '1'"),
    ],
)
def test_limit_rejects_bad_values(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Limit(*args)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_limit_cost_defaults_to_one_and_is_a_float() -> None:
    assert Limit("k", EIGHT).cost == 1.0
    assert type(Limit("k", EIGHT, 3).cost) is float


def test_judge_is_all_or_nothing_and_reports_the_worst_limit() -> None:
    slow = Rate(limit=1, period=10.0)  # interval 10 s, capacity 1
    fast = Rate(limit=10, period=1.0)
    limits = [Limit("fast", fast, 5), Limit("slow", slow, 1)]
    # "slow" is 4 s ahead of now: it is full until then.
    d = judge(limits, [100.0, 114.0], 100.0, 0.0)
    assert d == Decision(False, 0.0, 14.0, "slow", 0.0, 14.0)
    d = judge(limits, [100.0, 100.0], 100.0, 0.0)
    assert d.allowed
    assert d.wait == 0.0
    # after the charge "slow" has 0 of 1 left, "fast" 5 of 10: slow is the tightest
    assert (d.remaining, d.reset_after) == (0.0, 10.0)


# -- the contract every limiter keeps ---------------------------------------------------


class RateLimiterContract:
    """Behaviours shared by every rate limiter; subclasses provide ``limiter``
    built on the ``clock`` fixture."""

    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock()

    async def test_burst_from_idle_then_refused_with_retry_after(
        self, limiter: RateLimiter
    ) -> None:
        lim = [Limit("tenant:a", EIGHT, 1)]
        for left in (3.0, 2.0, 1.0, 0.0):
            d = await limiter.acquire(lim)
            assert (d.allowed, d.wait, d.remaining) == (True, 0.0, left)
        d = await limiter.acquire(lim)
        assert (d.allowed, d.limit, d.remaining) == (False, "tenant:a", 0.0)
        assert d.retry_after == pytest.approx(T, abs=1e-6)
        assert d.reset_after == pytest.approx(4 * T, abs=1e-6)

    async def test_steady_rate_admits_one_unit_per_interval(
        self, limiter: RateLimiter, clock: ManualClock
    ) -> None:
        lim = [Limit("k", EIGHT, 1)]
        for _ in range(4):
            assert (await limiter.acquire(lim)).allowed
        admitted = []
        for _ in range(40):  # 5 s in steps of T/2
            clock.advance(T / 2)
            admitted.append((await limiter.acquire(lim)).allowed)
        assert admitted == [step % 2 == 0 for step in range(1, 41)]

    async def test_no_drift_over_many_periods(
        self, limiter: RateLimiter, clock: ManualClock
    ) -> None:
        """Polling faster than the rate for 50 periods admits exactly
        limit * periods + burst units: no unit is lost or gained to rounding."""
        lim = [Limit("k", EIGHT, 1)]
        admitted = 0
        for _ in range(50 * 8 * 3):
            admitted += (await limiter.acquire(lim)).allowed
            clock.advance(T / 3)
        admitted += (await limiter.acquire(lim)).allowed
        assert admitted == 8 * 50 + 4

    async def test_any_window_of_a_period_admits_at_most_limit_plus_burst(
        self, limiter: RateLimiter, clock: ManualClock
    ) -> None:
        rng = random.Random(7)
        rate = Rate(limit=8, period=1.0, burst=3)
        times: list[float] = []
        costs: list[float] = []
        for _ in range(600):
            clock.advance(rng.choice([0.0, 0.0, 0.01, 0.02, 0.05, 0.4]))  # ~14 units/s
            cost = rng.choice([1.0, 1.0, 2.0, 0.5])
            if (await limiter.acquire([Limit("k", rate, cost)])).allowed:
                times.append(clock.monotonic())
                costs.append(cost)
        assert max_in_window(times, costs, rate.period) <= rate.limit + rate.capacity
        # demand runs ~2x the rate, but idle gaps waste some: most of the rate is used
        assert sum(costs) >= 0.7 * 8 * clock.monotonic()

    async def test_window_bound_is_reached_by_a_burst_then_a_full_period(
        self, limiter: RateLimiter, clock: ManualClock
    ) -> None:
        lim = [Limit("k", EIGHT, 1)]
        admitted = 0
        for _ in range(8 * 4 + 1):  # poll every T/4 from 0 to 1 s inclusive
            while (await limiter.acquire(lim)).allowed:
                admitted += 1
            clock.advance(T / 4)
        assert admitted == 8 + 4

    async def test_all_or_nothing_refusal_charges_no_limit(self, limiter: RateLimiter) -> None:
        roomy = Rate(limit=100, period=1.0)
        tight = Rate(limit=1, period=1.0)
        assert (await limiter.acquire([Limit("tight", tight, 1)])).allowed
        d = await limiter.acquire([Limit("roomy", roomy, 10), Limit("tight", tight, 1)])
        assert (d.allowed, d.limit) == (False, "tight")
        check = await limiter.acquire([Limit("roomy", roomy, 0)])
        assert check.remaining == 100.0

    async def test_refusal_names_the_limit_with_the_longest_retry_after(
        self, limiter: RateLimiter
    ) -> None:
        a = Rate(limit=1, period=2.0)
        b = Rate(limit=1, period=5.0)
        c = Rate(limit=10, period=1.0)
        assert (await limiter.acquire([Limit("a", a), Limit("b", b)])).allowed
        d = await limiter.acquire([Limit("a", a), Limit("b", b), Limit("c", c)])
        assert (d.allowed, d.limit) == (False, "b")
        assert d.retry_after == pytest.approx(5.0, abs=1e-6)

    async def test_max_wait_admits_with_a_reserved_slot(
        self, limiter: RateLimiter, clock: ManualClock
    ) -> None:
        lim = [Limit("k", EIGHT, 1)]
        for _ in range(4):
            await limiter.acquire(lim)
        waits = [(await limiter.acquire(lim, max_wait=0.3)).wait for _ in range(2)]
        assert waits == [pytest.approx(T, abs=1e-6), pytest.approx(2 * T, abs=1e-6)]
        d = await limiter.acquire(lim, max_wait=0.3)
        assert (d.allowed, d.limit) == (False, "k")
        assert d.retry_after == pytest.approx(3 * T, abs=1e-6)
        clock.advance(2 * T)  # the two reserved slots are now due, and taken
        d = await limiter.acquire(lim)
        assert d.allowed is False
        assert d.retry_after == pytest.approx(T, abs=1e-6)
        assert (limiter.stats.queued, limiter.stats.allowed) == (2, 6)

    async def test_wait_is_the_longest_over_the_limits(self, limiter: RateLimiter) -> None:
        a = Rate(limit=1, period=1.0)
        b = Rate(limit=1, period=3.0)
        assert (await limiter.acquire([Limit("a", a), Limit("b", b)])).allowed
        d = await limiter.acquire([Limit("a", a), Limit("b", b)], max_wait=5.0)
        assert (d.allowed, d.retry_after) == (True, 0.0)
        assert d.wait == pytest.approx(3.0, abs=1e-6)

    async def test_cost_above_capacity_can_never_pass(self, limiter: RateLimiter) -> None:
        d = await limiter.acquire([Limit("ok", EIGHT, 1), Limit("k", EIGHT, 5)], max_wait=1e6)
        assert (d.allowed, d.retry_after, d.limit) == (False, math.inf, "k")
        assert (await limiter.acquire([Limit("ok", EIGHT, 0)])).remaining == 4.0

    async def test_zero_cost_checks_without_charging(self, limiter: RateLimiter) -> None:
        lim = Limit("k", EIGHT, 0)
        for _ in range(10):
            d = await limiter.acquire([lim])
            assert (d.allowed, d.remaining, d.reset_after) == (True, 4.0, 0.0)

    async def test_settle_gives_units_back_but_never_beyond_idle(
        self, limiter: RateLimiter
    ) -> None:
        lim = [Limit("k", EIGHT, 1)]
        for _ in range(4):
            await limiter.acquire(lim)
        await limiter.settle("k", EIGHT, -2)
        d = await limiter.acquire([Limit("k", EIGHT, 0)])
        assert d.remaining == 2.0
        await limiter.settle("k", EIGHT, -100)
        assert (await limiter.acquire([Limit("k", EIGHT, 0)])).remaining == 4.0
        assert (await limiter.acquire([Limit("k", EIGHT, 4)])).allowed
        assert not (await limiter.acquire(lim)).allowed

    async def test_settle_takes_extra_units(self, limiter: RateLimiter) -> None:
        assert (await limiter.acquire([Limit("k", EIGHT, 1)])).allowed
        await limiter.settle("k", EIGHT, 6)  # 7 units on a capacity of 4: 3 over
        d = await limiter.acquire([Limit("k", EIGHT, 0)])
        assert (d.allowed, d.limit) == (False, "k")
        assert d.retry_after == pytest.approx(3 * T, abs=1e-6)
        await limiter.settle("fresh", EIGHT, 2)
        assert (await limiter.acquire([Limit("fresh", EIGHT, 0)])).remaining == 2.0

    async def test_remaining_and_reset_after_follow_the_tightest_limit(
        self, limiter: RateLimiter
    ) -> None:
        requests = Rate(limit=10, period=1.0)
        tokens = Rate(limit=1000, period=1.0)
        d = await limiter.acquire([Limit("rpm", requests, 1), Limit("tpm", tokens, 500)])
        assert d.remaining == 500.0
        assert d.reset_after == pytest.approx(0.5, abs=1e-6)
        d = await limiter.acquire([Limit("rpm", requests, 1), Limit("tpm", tokens, 100)])
        assert d.remaining == 400.0
        assert d.reset_after == pytest.approx(0.6, abs=1e-6)

    async def test_no_limits_is_allowed(self, limiter: RateLimiter) -> None:
        assert await limiter.acquire([]) == Decision(True, 0.0, 0.0, None, math.inf, 0.0)

    async def test_keys_are_independent(self, limiter: RateLimiter) -> None:
        for _ in range(4):
            assert (await limiter.acquire([Limit("a", EIGHT)])).allowed
        assert not (await limiter.acquire([Limit("a", EIGHT)])).allowed
        assert (await limiter.acquire([Limit("b", EIGHT)])).allowed

    async def test_stats_count_decisions(self, limiter: RateLimiter) -> None:
        lim = [Limit("k", EIGHT, 2)]
        for _ in range(3):
            await limiter.acquire(lim)
        await limiter.acquire(lim, max_wait=1.0)
        assert limiter.stats == RateLimiterStats(
            decisions=4,
            allowed=3,
            refused=1,
            queued=1,
            errors=0,
            failed_open=0,
            failed_closed=0,
            healthy=True,
        )

    @pytest.mark.parametrize(
        ("limits", "max_wait", "message"),
        [
            ([Limit("k", EIGHT)], -1.0, "max_wait must be a number >= 0, got -1.0"),
            ([Limit("k", EIGHT)], math.nan, "max_wait must be a number >= 0, got float nan"),
            ([Limit("k", EIGHT)], "1", "max_wait must be a number >= 0, got str '1'"),
            (Limit("k", EIGHT), 0.0, "limits must be a sequence of Limit, got Limit(key='k'"),
            (None, 0.0, "limits must be a sequence of Limit, got None"),
            ("abc", 0.0, "limits must be a sequence of Limit, got 'abc'"),
            ([Limit("k", EIGHT), ("k", 1)], 0.0, "limits[1] must be a Limit, got ('k', 1)"),
        ],
    )
    async def test_acquire_rejects_bad_arguments(
        self, limiter: RateLimiter, limits: object, max_wait: object, message: str
    ) -> None:
        with pytest.raises(ConfigError) as info:
            await limiter.acquire(limits, max_wait=max_wait)  # type: ignore[arg-type]
        assert str(info.value).startswith(message)
        assert limiter.stats.decisions == 0

    async def test_acquire_takes_any_iterable_of_limits(self, limiter: RateLimiter) -> None:
        d = await limiter.acquire(Limit(k, EIGHT) for k in ("a", "b"))  # type: ignore[arg-type]
        assert (d.allowed, d.remaining) == (True, 3.0)

    @pytest.mark.parametrize(
        ("key", "rate", "delta", "message"),
        [
            ("", EIGHT, 1.0, "key must be a non-empty string, got ''"),
            ("k", "8/s", 1.0, "rate must be a Rate, got '8/s'"),
            ("k", EIGHT, math.inf, "delta must be a finite number, got inf"),
            ("k", EIGHT, None, "delta must be a finite number, got None"),
        ],
    )
    async def test_settle_rejects_bad_arguments(
        self, limiter: RateLimiter, key: object, rate: object, delta: object, message: str
    ) -> None:
        with pytest.raises(ConfigError) as info:
            await limiter.settle(key, rate, delta)  # type: ignore[arg-type]
        assert str(info.value) == message


class TestLocalContract(RateLimiterContract):
    @pytest.fixture
    async def limiter(self, clock: ManualClock) -> AsyncIterator[LocalRateLimiter]:
        rl = LocalRateLimiter(clock=clock)
        yield rl
        await rl.aclose()


# -- LocalRateLimiter only ------------------------------------------------------------------


def test_no_drift_over_1000_periods_at_a_rate_not_exact_in_binary() -> None:
    clock = ManualClock()
    rl = LocalRateLimiter(clock=clock)
    rate = Rate(limit=10, period=1.0, burst=5)  # interval 0.1: every sum rounds
    lim = [Limit("k", rate, 1)]
    admitted = 0
    for _ in range(1000 * 10 * 4):
        admitted += rl.decide(lim).allowed
        clock.advance(0.025)
    admitted += rl.decide(lim).allowed
    assert admitted == 10 * 1000 + 5


def test_decide_is_the_sync_core_of_acquire() -> None:
    rl = LocalRateLimiter(clock=ManualClock())
    d = rl.decide([Limit("k", EIGHT, 4)])
    assert d == Decision(True, 0.0, 0.0, None, 0.0, 0.5)
    assert rl.decide([Limit("k", EIGHT, 1)]).limit == "k"


def test_adjust_is_the_sync_settle() -> None:
    rl = LocalRateLimiter(clock=ManualClock())
    rl.decide([Limit("k", EIGHT, 4)])
    rl.adjust("k", EIGHT, -4)
    assert len(rl) == 0  # back to idle: nothing to remember
    assert rl.decide([Limit("k", EIGHT, 0)]).remaining == 4.0


def test_zero_cost_and_refusals_store_no_key() -> None:
    rl = LocalRateLimiter(clock=ManualClock())
    rl.decide([Limit("a", EIGHT, 0)])
    rl.decide([Limit("b", EIGHT, 9)])
    assert len(rl) == 0


def test_key_bound_drops_idle_counters_first() -> None:
    clock = ManualClock()
    rl = LocalRateLimiter(clock=clock, max_keys=16)
    slow = Rate(limit=1, period=100.0)
    for i in range(8):
        rl.decide([Limit(f"idle{i}", EIGHT, 1)])  # idle again after T
    clock.advance(1.0)
    for i in range(8):
        rl.decide([Limit(f"busy{i}", slow, 1)])  # busy for 100 s
    assert len(rl) == 16
    rl.decide([Limit("new", slow, 1)])
    assert len(rl) == 9  # the 8 idle ones went, every busy one stayed
    for i in range(8):
        assert rl.decide([Limit(f"busy{i}", slow, 1)]).allowed is False


def test_key_bound_drops_the_oldest_busy_counters_when_none_is_idle() -> None:
    rl = LocalRateLimiter(clock=ManualClock(), max_keys=16)
    slow = Rate(limit=1, period=100.0)
    for i in range(40):
        rl.decide([Limit(f"k{i}", slow, 1)])
        assert len(rl) <= 16
    # swept to 14 (max_keys - max_keys // 8) when full: the newest survive
    assert len(rl) == 16
    assert rl.decide([Limit("k39", slow, 1)]).allowed is False
    assert rl.decide([Limit("k0", slow, 1)]).allowed is True  # forgotten: idle again


def test_max_keys_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"max_keys must be an int >= 1, got 0"):
        LocalRateLimiter(max_keys=0)


def test_stats_of_a_local_limiter_are_always_healthy() -> None:
    rl = LocalRateLimiter(clock=ManualClock())
    rl.decide([Limit("k", EIGHT, 9)])
    assert (rl.stats.refused, rl.stats.errors, rl.stats.healthy) == (1, 0, True)
