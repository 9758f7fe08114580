"""Budgets: reservations, thresholds, refusals, settling once, sweeping holds a
dead process left, period rollover; in the process and in Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from hotpath import BudgetExceededError, ConfigError, ManualClock, TrafficError
from hotpath.cost import (
    BudgetEvent,
    BudgetRule,
    Budgets,
    LocalBudgetStore,
    RedisBudgetStore,
    window,
)
from redis_server import RedisServer


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


# Redis expires counters at their period's end (Redis time), so clocks start now.
NOW = time.time()


@pytest.fixture(params=["local", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "redis":
        request.applymarker(pytest.mark.redis)
    return str(request.param)


class Maker:
    """Budgets over one shared store (two of them play two replicas)."""

    def __init__(self, kind: str, url: str, prefix: str) -> None:
        self.kind = kind
        self.url = url
        self.prefix = prefix
        self.local = LocalBudgetStore()
        self.made: list[Budgets] = []

    def __call__(self, rules: list[BudgetRule], clock: ManualClock, **kw: object) -> Budgets:
        store = (
            self.local
            if self.kind == "local"
            else RedisBudgetStore(self.url, prefix=self.prefix + "budget:")
        )
        budgets = Budgets(rules, store=store, prefix=self.prefix, clock=clock, **kw)  # type: ignore[arg-type]
        self.made.append(budgets)
        return budgets


@pytest.fixture
async def make(store_kind: str, request: pytest.FixtureRequest) -> AsyncIterator[Maker]:
    if store_kind == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
    else:
        url, prefix = "", "t:"
    maker = Maker(store_kind, url, prefix)
    yield maker
    for budgets in maker.made:
        await budgets.aclose()


def _tenant(limit: float = 1.0, **kw: object) -> BudgetRule:
    return BudgetRule(scope="tenant", match="acme", limit_usd=limit, period="month", **kw)  # type: ignore[arg-type]


async def test_reserve_settle_and_status(make: Maker) -> None:
    clock = ManualClock(NOW)
    budgets = make([_tenant(1.0)], clock)
    hold = await budgets.reserve(key="k", tenant="acme", model="m", estimate=0.30)
    assert hold is not None
    assert hold.model == "m"
    assert not hold.downgraded
    [status] = await budgets.status(tenant="acme")
    assert status.reserved == pytest.approx(0.30)
    assert status.spent == 0
    await budgets.settle(hold, 0.10)
    await budgets.settle(hold, 0.10)  # once only
    [status] = await budgets.status(tenant="acme")
    assert status.spent == pytest.approx(0.10)
    assert status.reserved == 0
    assert status.name == "tenant:acme:month"
    assert status.reset_at == window("month", NOW).reset_iso()
    # Another tenant has no budget: nothing reserved.
    assert await budgets.reserve(key="k", tenant="other", model="m", estimate=5.0) is None


async def test_refusal_names_budget_limit_spend_and_reset(make: Maker) -> None:
    clock = ManualClock(NOW)
    budgets = make([_tenant(1.0)], clock)
    hold = await budgets.reserve(key="k", tenant="acme", model="m", estimate=0.9)
    await budgets.settle(hold, 0.9)
    # 0.9 spent: a call reserving 0.2 would cross the budget: refused before it goes.
    with pytest.raises(BudgetExceededError) as info:
        await budgets.reserve(key="k", tenant="acme", model="m", estimate=0.2)
    err = info.value
    reset = window("month", NOW)
    assert err.budget == "tenant:acme:month"
    assert err.limit == 1.0
    assert err.spent == pytest.approx(0.9)
    assert err.reset_at == reset.end
    assert "would be crossed" in str(err)
    assert "$1.00" in str(err)
    assert "$0.90 spent" in str(err)
    assert reset.reset_iso() in str(err)
    assert err.retry_after is not None
    assert err.retry_after >= 1
    # A call that fits still goes.
    small = await budgets.reserve(key="k", tenant="acme", model="m", estimate=0.05)
    await budgets.settle(small, 0.1)
    with pytest.raises(BudgetExceededError, match="is used up"):
        await budgets.reserve(key="k", tenant="acme", model="m", estimate=0.0)
    assert budgets.stats.refused == 2


async def test_alert_once_per_period_across_replicas(make: Maker) -> None:
    clock = ManualClock(NOW)
    events: list[BudgetEvent] = []
    one = make([_tenant(1.0)], clock, on_event=events.append)
    two = make([_tenant(1.0)], clock, on_event=events.append)
    await one.settle(await one.reserve(key="k", tenant="acme", model="m", estimate=0.5), 0.5)
    assert events == []
    await one.settle(await one.reserve(key="k", tenant="acme", model="m", estimate=0.3), 0.3)
    await two.settle(await two.reserve(key="k", tenant="acme", model="m", estimate=0.05), 0.05)
    alerts = [e for e in events if e.kind == "alert"]
    assert len(alerts) == 1
    assert alerts[0].budget.name == "tenant:acme:month"
    assert alerts[0].budget.ratio == pytest.approx(0.8)
    assert alerts[0].tenant == "acme"


async def test_downgrade_from_95_percent(make: Maker) -> None:
    clock = ManualClock(NOW)
    events: list[BudgetEvent] = []
    rule = _tenant(1.0, downgrade_to="small")
    budgets = make([rule], clock, on_event=events.append)
    prices = {"small": 0.01}
    hold = await budgets.reserve(
        key="k", tenant="acme", model="big", estimate=0.5, downgrade_estimate=prices.get
    )
    assert hold is not None
    assert hold.model == "big"
    await budgets.settle(hold, 0.90)
    # 0.90 + 0.06 >= 0.95: the call goes to the cheaper model, reserving its price.
    hold = await budgets.reserve(
        key="k", tenant="acme", model="big", estimate=0.06, downgrade_estimate=prices.get
    )
    assert hold is not None
    assert hold.downgraded
    assert hold.model == "small"
    assert hold.amount == 10_000_000
    assert [e.kind for e in events if e.kind == "downgrade"] == ["downgrade"]
    # At the full estimate it would cross; downgraded it fits.
    await budgets.settle(hold, 0.01)
    hold = await budgets.reserve(
        key="k", tenant="acme", model="big", estimate=0.5, downgrade_estimate=prices.get
    )
    assert hold is not None
    assert hold.model == "small"


async def test_unsettled_hold_is_swept_at_its_reservation(make: Maker) -> None:
    clock = ManualClock(NOW)
    dead = make([_tenant(1.0)], clock, settle_after=60.0)
    alive = make([_tenant(1.0)], clock, settle_after=60.0)
    hold = await dead.reserve(key="k", tenant="acme", model="m", estimate=0.25)
    assert hold is not None
    # `dead` crashed between its call and the booking; `alive` sweeps.
    assert await alive.sweep() == 0
    clock.advance(61)
    assert await alive.sweep() == 1
    [status] = await alive.status(tenant="acme")
    assert status.spent == pytest.approx(0.25)
    assert status.reserved == 0
    # A late settle from the "dead" process does not count twice.
    await dead.settle(hold, 0.10)
    [status] = await alive.status(tenant="acme")
    assert status.spent == pytest.approx(0.25)


async def test_period_rollover(make: Maker) -> None:
    end = window("day", NOW).end
    clock = ManualClock(end - 1)
    rule = BudgetRule(scope="key", limit_usd=0.5, period="day")
    budgets = make([rule], clock)
    await budgets.settle(await budgets.reserve(key="a", tenant="t", model="m", estimate=0.5), 0.5)
    with pytest.raises(BudgetExceededError) as info:
        await budgets.reserve(key="a", tenant="t", model="m", estimate=0.01)
    assert info.value.budget == "key:a:day"
    assert info.value.retry_after == 1
    # Each key has its own counter under a "*" rule.
    assert await budgets.reserve(key="b", tenant="t", model="m", estimate=0.01) is not None
    clock.advance(2)  # past midnight UTC: a new day, a fresh budget
    hold = await budgets.reserve(key="a", tenant="t", model="m", estimate=0.3)
    assert hold is not None
    [status] = await budgets.status(key="a")
    assert status.reserved == pytest.approx(0.3)
    assert status.spent == 0


async def test_several_budgets_all_or_nothing(make: Maker) -> None:
    clock = ManualClock(NOW)
    rules = [
        BudgetRule(scope="tenant", limit_usd=10.0, period="month"),
        BudgetRule(scope="key", match="k", limit_usd=0.2, period="day"),
    ]
    budgets = make(rules, clock)
    hold = await budgets.reserve(key="k", tenant="acme", model="m", estimate=0.15)
    assert hold is not None
    assert len(hold.budgets) == 2
    with pytest.raises(BudgetExceededError, match="key:k:day"):
        await budgets.reserve(key="k", tenant="acme", model="m", estimate=0.1)
    # The refused call reserved nothing on the tenant budget either.
    tenant, key = await budgets.status(key="k", tenant="acme")
    assert tenant.reserved == pytest.approx(0.15)
    assert key.reserved == pytest.approx(0.15)


async def test_concurrent_reservations_never_overspend(make: Maker) -> None:
    clock = ManualClock(NOW)
    replicas = [make([_tenant(1.0)], clock) for _ in range(3)]

    async def spend(budgets: Budgets) -> int:
        done = 0
        for _ in range(20):
            try:
                hold = await budgets.reserve(key="k", tenant="acme", model="m", estimate=0.03)
            except BudgetExceededError:
                continue
            await asyncio.sleep(0)
            await budgets.settle(hold, 0.03)
            done += 1
        return done

    counts = await asyncio.gather(*(spend(b) for r in replicas for b in [r, r]))
    assert sum(counts) == 33  # floor(1.0 / 0.03)
    [status] = await replicas[0].status(tenant="acme")
    assert status.spent <= 1.0
    assert status.spent == pytest.approx(0.99)


@pytest.mark.redis
async def test_redis_down_fails_open_and_books_later(redis_server: RedisServer) -> None:
    clock = ManualClock(time.time())
    store = RedisBudgetStore(redis_server.url, prefix="b:", timeout=0.2)
    budgets = Budgets([_tenant(1.0)], store=store, prefix="b:", clock=clock)
    try:
        redis_server.stop()
        hold = await budgets.reserve(key="k", tenant="acme", model="m", estimate=0.3)
        assert hold is not None
        assert not hold.booked
        await budgets.settle(hold, 0.2)
        assert budgets.stats.queued == 1
        # The reserve met the fault; the settle right after left the store alone.
        assert budgets.stats.store_errors == 1
        assert budgets.stats.skipped == 1
        redis_server.start()
        await budgets.sweep()
        [status] = await budgets.status(tenant="acme")
        assert status.spent == pytest.approx(0.2)
        assert status.reserved == 0
    finally:
        await budgets.aclose()


@pytest.mark.redis
async def test_redis_down_fails_closed_when_told() -> None:
    store = RedisBudgetStore("redis://127.0.0.1:1/0", timeout=0.2)
    budgets = Budgets([_tenant(1.0)], store=store, on_error="closed")
    try:
        with pytest.raises(TrafficError, match="budget store is unavailable"):
            await budgets.reserve(key="k", tenant="acme", model="m", estimate=0.3)
    finally:
        await budgets.aclose()


def test_windows() -> None:
    now = _ts("2026-12-02T17:40:00")
    assert window("day", now)[:3] == (_ts("2026-12-02"), _ts("2026-12-03"), "2026-12-02")
    assert window("week", now)[:3] == (_ts("2026-11-30"), _ts("2026-12-07"), "2026-W49")
    assert window("month", now)[:3] == (_ts("2026-12-01"), _ts("2027-01-01"), "2026-12")
    assert window("month", now).reset_iso() == "2027-01-01T00:00:00Z"
    assert window("week", _ts("2027-01-01")).label == "2026-W53"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"scope": "team"}, "budgets[].scope must be one of"),
        ({"limit_usd": 0}, "budgets[tenant:*].limit_usd must be a positive number, got 0"),
        ({"limit_usd": "5"}, "limit_usd must be a positive number, got str '5'"),
        (
            {"period": "year"},
            "budgets[tenant:*].period must be one of ('day', 'week', 'month'), got 'year'",
        ),
        ({"alert_at": 1.5}, "budgets[tenant:*].alert_at must be in (0, 1], got 1.5"),
        ({"downgrade_at": 0}, "downgrade_at must be a positive number, got 0"),
        ({"match": ""}, "budgets[].match must be a non-empty string, got ''"),
        ({"downgrade_to": ""}, "downgrade_to must be a non-empty string, got ''"),
    ],
)
def test_rule_validation(fields: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"scope": "tenant", "limit_usd": 1.0, **fields}
    with pytest.raises(ConfigError) as info:
        BudgetRule(**args)  # type: ignore[arg-type]
    assert message in str(info.value)


async def test_a_failed_store_is_left_alone_for_retry_interval() -> None:
    """An outage must not cost every call a timeout: after a fault, calls are
    decided without the store until ``retry_interval`` has passed."""
    clock = ManualClock(NOW)
    store = RedisBudgetStore("redis://127.0.0.1:1/0", timeout=0.2)
    budgets = Budgets([_tenant(1.0)], store=store, clock=clock, retry_interval=1.0)
    try:
        first = await budgets.reserve(key="k", tenant="acme", model="m", estimate=0.1)
        second = await budgets.reserve(key="k", tenant="acme", model="m", estimate=0.1)
        assert first is not None
        assert second is not None
        assert not second.booked
        assert budgets.stats.store_errors == 1
        assert budgets.stats.skipped == 1
        clock.advance(1.5)
        await budgets.reserve(key="k", tenant="acme", model="m", estimate=0.1)
        assert budgets.stats.store_errors == 2
    finally:
        await budgets.aclose()
