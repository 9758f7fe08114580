"""The usage ledger: the same contract against the memory, SQLite and Redis stores."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import pytest

from hotpath._clock import ManualClock
from hotpath._errors import ConfigError
from hotpath.cost._ledger import Ledger, LedgerStore, open_ledger_store
from hotpath.cost._ledger_rows import COUNTERS, DIMENSIONS, RowKey, SpendRow, total_row
from hotpath.cost._ledger_stores import MemoryLedgerStore, RedisLedgerStore, SqliteLedgerStore
from hotpath.cost._usage import Usage

DEC_2 = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC).timestamp()

StoreFactory = Callable[[], LedgerStore]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(DEC_2)


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)],
)
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Makes stores on one shared backend: each call is another replica's view of it."""
    if request.param == "memory":
        shared = MemoryLedgerStore()
        return lambda: shared
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger' / 'usage.db'}"
        return lambda: open_ledger_store(url)
    redis_url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    return lambda: open_ledger_store(redis_url, prefix=prefix)


@pytest.fixture
async def ledger(new_store: StoreFactory, clock: ManualClock) -> AsyncIterator[Ledger]:
    led = Ledger(new_store(), clock=clock)
    await led.start()
    try:
        yield led
    finally:
        await led.aclose()


def _record_mix(led: Ledger) -> None:
    """Two tenants, two models, two keys, two deployments; costs in exact nanos."""
    for _ in range(3):
        led.record(
            key="k1",
            tenant="acme",
            model="gpt-4o",
            deployment="azure-east",
            usage=Usage(100, 20, cached_tokens=40),
            cost=0.001,
        )
    led.record(
        key="k2",
        tenant="globex",
        model="gpt-4o-mini",
        deployment="openai",
        usage=Usage(10, 5, estimated=True),
        cost=0.0002,
    )
    led.record(
        key="k2",
        tenant="globex",
        model="llama-local",
        deployment="vllm",
        usage=Usage(7, 3),
        cost=None,
    )
    led.record(
        key="k1",
        tenant="acme",
        model="gpt-4o",
        deployment="azure-west",
        usage=None,
        cost=None,
        error=True,
    )
    led.record_saving(
        key="k1",
        tenant="acme",
        model="gpt-4o",
        deployment="azure-east",
        cost=0.001,
        latency=1.25,
    )
    led.record_saving(
        key="k2",
        tenant="globex",
        model="llama-local",
        deployment="vllm",
        cost=None,
        latency=0.5,
        kind="coalesced",
    )


# -- the contract, on every store ------------------------------------------------------


async def test_report_by_model_after_flush(ledger: Ledger) -> None:
    """Counts, tokens, cost, unknown cost, estimates, errors and savings by model."""
    _record_mix(ledger)
    await ledger.flush()
    rows = await ledger.report()
    assert [r.group for r in rows] == [
        {"model": "gpt-4o"},
        {"model": "gpt-4o-mini"},
        {"model": "llama-local"},
    ]
    gpt4o, mini, llama = rows
    assert gpt4o.requests == 4
    assert gpt4o.prompt_tokens == 300
    assert gpt4o.completion_tokens == 60
    assert gpt4o.cached_tokens == 120
    assert gpt4o.cost_usd == pytest.approx(0.003)
    assert gpt4o.errors == 1
    assert gpt4o.unknown_cost == 0
    assert gpt4o.cache_hits == 1
    assert gpt4o.saved_usd == pytest.approx(0.001)
    assert gpt4o.saved_latency_s == pytest.approx(1.25)
    assert mini.estimated == 1
    assert mini.cost_usd == pytest.approx(0.0002)
    assert llama.unknown_cost == 1
    assert llama.cost_usd == 0
    assert llama.coalesced == 1
    assert llama.saved_unknown == 1
    assert llama.cache_hits == 0


@pytest.mark.parametrize("dim", DIMENSIONS)
async def test_report_groups_by_each_dimension(ledger: Ledger, dim: str) -> None:
    """Grouping by any one dimension adds up to the same totals."""
    _record_mix(ledger)
    await ledger.flush()
    rows = await ledger.report(by=(dim,))
    assert all(set(r.group) == {dim} for r in rows)
    expected = {
        "day": {"2026-12-02"},
        "key": {"k1", "k2"},
        "tenant": {"acme", "globex"},
        "model": {"gpt-4o", "gpt-4o-mini", "llama-local"},
        "deployment": {"azure-east", "azure-west", "openai", "vllm"},
    }[dim]
    assert {r.group[dim] for r in rows} == expected
    total = total_row(rows)
    assert total.group == {}
    assert total.requests == 6
    assert total.prompt_tokens == 317
    assert total.cost_usd == pytest.approx(0.0032)
    assert total.cache_hits + total.coalesced == 2
    costs = [r.cost_usd for r in rows]
    assert costs == sorted(costs, reverse=True)


async def test_report_by_tenant_and_day(ledger: Ledger, clock: ManualClock) -> None:
    """Two dimensions at once; group dicts carry both, in the order asked."""
    ledger.record(key="k", tenant="acme", model="m", deployment="d", usage=Usage(1, 1), cost=0.5)
    clock.advance(86_400)
    ledger.record(key="k", tenant="acme", model="m", deployment="d", usage=Usage(1, 1), cost=0.25)
    ledger.record(key="k", tenant="globex", model="m", deployment="d", usage=Usage(1, 1), cost=1.0)
    await ledger.flush()
    rows = await ledger.report(by=("tenant", "day"))
    assert [list(r.group.items()) for r in rows] == [
        [("tenant", "globex"), ("day", "2026-12-03")],
        [("tenant", "acme"), ("day", "2026-12-02")],
        [("tenant", "acme"), ("day", "2026-12-03")],
    ]
    assert [r.cost_usd for r in rows] == [1.0, 0.5, 0.25]
    assert total_row(rows).cost_usd == 1.75


async def test_empty_by_gives_one_total_row(ledger: Ledger) -> None:
    _record_mix(ledger)
    rows = await ledger.report(by=())
    assert len(rows) == 1
    assert rows[0].group == {}
    assert rows[0].requests == 6


async def test_since_until_and_where(ledger: Ledger, clock: ManualClock) -> None:
    """since/until are inclusive days; where keeps the matching rows only."""
    for _ in range(3):  # Dec 2, 3 and 4
        for tenant, cost in (("acme", 0.1), ("globex", 0.2)):
            ledger.record(
                key="k", tenant=tenant, model="m", deployment="d", usage=Usage(1, 0), cost=cost
            )
        clock.advance(86_400)
    await ledger.flush()
    rows = await ledger.report(by=("day",), since="2026-12-03", until="2026-12-04")
    assert sorted(r.group["day"] for r in rows) == ["2026-12-03", "2026-12-04"]
    assert all(r.requests == 2 for r in rows)
    assert await ledger.report(by=("day",), since="2026-12-05") == []
    rows = await ledger.report(by=("day",), until="2026-12-02")
    assert [r.group["day"] for r in rows] == ["2026-12-02"]
    rows = await ledger.report(by=("day",), since="2026-12-03", until="2026-12-03")
    assert [r.group["day"] for r in rows] == ["2026-12-03"]
    rows = await ledger.report(by=("tenant",), where={"tenant": "acme"})
    assert [r.group for r in rows] == [{"tenant": "acme"}]
    assert rows[0].requests == 3
    assert rows[0].cost_usd == pytest.approx(0.3)
    rows = await ledger.report(by=("day",), where={"tenant": "globex", "day": "2026-12-04"})
    assert [(r.group, r.requests) for r in rows] == [({"day": "2026-12-04"}, 1)]
    assert await ledger.report(where={"tenant": "nobody"}) == []


async def test_unflushed_records_show_in_report(ledger: Ledger) -> None:
    """report() reads the store plus the batch, counting each record once."""
    _record_mix(ledger)
    await ledger.flush()
    _record_mix(ledger)  # not flushed
    assert ledger.stats.pending_rows > 0
    rows = await ledger.report(by=())
    assert rows[0].requests == 12
    await ledger.flush()
    assert ledger.stats.pending_rows == 0
    rows = await ledger.report(by=())
    assert rows[0].requests == 12
    assert rows[0].cost_usd == pytest.approx(0.0064)


async def test_day_rolls_over_at_utc_midnight(new_store: StoreFactory) -> None:
    """23:59:59 and 00:00:01 UTC the next day are two days."""
    clock = ManualClock(dt.datetime(2026, 12, 31, 23, 59, 59, tzinfo=dt.UTC).timestamp())
    led = Ledger(new_store(), clock=clock)
    await led.start()
    try:
        led.record(key="k", tenant="t", model="m", deployment="d", usage=Usage(1, 1), cost=0.1)
        clock.advance(2)
        led.record(key="k", tenant="t", model="m", deployment="d", usage=Usage(1, 1), cost=0.2)
        await led.flush()
        rows = await led.report(by=("day",))
        assert sorted((r.group["day"], r.requests) for r in rows) == [
            ("2026-12-31", 1),
            ("2027-01-01", 1),
        ]
    finally:
        await led.aclose()


async def test_two_replicas_add_to_the_same_counters(
    new_store: StoreFactory, clock: ManualClock
) -> None:
    """Two ledgers on one store, flushing concurrently, lose no increment."""
    replicas = [Ledger(new_store(), clock=clock) for _ in range(2)]
    for led in replicas:
        await led.start()
    try:
        for _ in range(5):
            for led in replicas:
                for _ in range(20):
                    led.record(
                        key="k",
                        tenant="acme",
                        model="m",
                        deployment="d",
                        usage=Usage(3, 2),
                        cost=0.000_001,
                    )
                    led.record_saving(
                        key="k", tenant="acme", model="m", deployment="d", cost=0.5, latency=0.1
                    )
            await asyncio.gather(*(led.flush() for led in replicas))
        reader = Ledger(new_store(), clock=clock)
        try:
            rows = await reader.report(by=("tenant",))
        finally:
            await reader.aclose()
        assert len(rows) == 1
        row = rows[0]
        assert row.requests == 200
        assert row.prompt_tokens == 600
        assert row.completion_tokens == 400
        assert row.cost_usd == pytest.approx(0.0002)
        assert row.cache_hits == 200
        assert row.saved_usd == pytest.approx(100.0)
        assert row.saved_latency_s == pytest.approx(20.0)
        assert all(led.stats.flush_failures == 0 for led in replicas)
        assert sum(led.stats.recorded for led in replicas) == 400
    finally:
        for led in replicas:
            await led.aclose()


async def test_retention_drops_old_days(new_store: StoreFactory, clock: ManualClock) -> None:
    """Rows older than retention_days (before the newest day written) are dropped."""
    led = Ledger(new_store(), clock=clock, retention_days=3)
    await led.start()
    try:
        led.record(key="k", tenant="t", model="m", deployment="d", usage=Usage(1, 1), cost=0.1)
        await led.flush()
        clock.advance(2 * 86_400)  # Dec 4: Dec 2 is still within 3 days
        led.record(key="k", tenant="t", model="m", deployment="d", usage=Usage(1, 1), cost=0.1)
        await led.flush()
        assert len(await led.report(by=("day",))) == 2
        clock.advance(86_400)  # Dec 5: Dec 2 is out
        led.record(key="k", tenant="t", model="m", deployment="d", usage=Usage(1, 1), cost=0.1)
        await led.flush()
        days = [r.group["day"] for r in await led.report(by=("day",))]
        assert sorted(days) == ["2026-12-04", "2026-12-05"]
    finally:
        await led.aclose()


async def test_odd_dimension_values_round_trip(ledger: Ledger) -> None:
    """Any text survives the stores; "\x1f" (the Redis separator) becomes a space."""
    ledger.record(
        key="k:1/é",
        tenant="a\x1fb",
        model="org/model:latest",
        deployment="東京 ☃",
        usage=Usage(1, 1),
        cost=0.1,
    )
    await ledger.flush()
    rows = await ledger.report(by=("key", "tenant", "model", "deployment"))
    assert [r.group for r in rows] == [
        {"key": "k:1/é", "tenant": "a b", "model": "org/model:latest", "deployment": "東京 ☃"}
    ]


async def test_aclose_flushes_what_is_left(new_store: StoreFactory, clock: ManualClock) -> None:
    led = Ledger(new_store(), clock=clock)
    await led.start()
    led.record(key="k", tenant="t", model="m", deployment="d", usage=Usage(5, 5), cost=0.5)
    await led.aclose()
    await led.aclose()  # idempotent
    assert led.stats.flushed_rows == 1
    reader = Ledger(new_store(), clock=clock)
    try:
        rows = await reader.report()
        assert [(r.group, r.requests) for r in rows] == [({"model": "m"}, 1)]
    finally:
        await reader.aclose()


# -- failures ---------------------------------------------------------------------------


class FlakyStore(MemoryLedgerStore):
    """A store whose first ``failures`` adds fail (our own protocol, not a mock of a backend)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def add(self, rows: Mapping[RowKey, Mapping[str, int]], *, retention_days: int) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("store is down")
        await super().add(rows, retention_days=retention_days)


async def test_failed_flush_keeps_the_rows_and_retries(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing store: flush does not raise, nothing is lost, one WARNING per streak."""
    store = FlakyStore(failures=2)
    led = Ledger(store, clock=clock)
    caplog.set_level(logging.DEBUG, logger="hotpath.cost")
    led.record(key="k", tenant="t", model="m", deployment="d", usage=Usage(1, 1), cost=0.1)
    await led.flush()
    led.record(key="k", tenant="t", model="m", deployment="d", usage=Usage(1, 1), cost=0.1)
    await led.flush()
    assert led.stats.flush_failures == 2
    assert led.stats.pending_rows == 1
    assert led.stats.flushed_rows == 0
    assert await store.read(since=None, until=None) == []
    rows = await led.report(by=())
    assert rows[0].requests == 2  # the kept batch still shows
    await led.flush()
    assert led.stats.pending_rows == 0
    assert led.stats.flushed_rows == 1
    stored = await store.read(since=None, until=None)
    assert [counters["requests"] for _, counters in stored] == [2]
    assert [counters["cost_nanos"] for _, counters in stored] == [200_000_000]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # the failure streak, then the recovery
    assert "failed" in warnings[0].getMessage()
    assert "works again" in warnings[1].getMessage()
    store.failures = 1
    led.record(key="k", tenant="t", model="m", deployment="d", usage=Usage(1, 1), cost=0.1)
    await led.flush()
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 3  # new streak
    await led.aclose()
    stored = await store.read(since=None, until=None)
    assert [counters["requests"] for _, counters in stored] == [3]


async def test_redis_down_flush_does_not_raise(clock: ManualClock) -> None:
    led = Ledger(open_ledger_store("redis://127.0.0.1:1/0?socket_connect_timeout=0.2"), clock=clock)
    await led.start()
    try:
        led.record(key="k", tenant="t", model="m", deployment="d", usage=Usage(1, 1), cost=0.1)
        await led.flush()
        await led.flush()
        assert led.stats.flush_failures == 2
        assert led.stats.pending_rows == 1
    finally:
        await led.aclose()


async def test_sqlite_unusable_path_flush_does_not_raise(
    clock: ManualClock, tmp_path: Path
) -> None:
    """The parent of the database is a file: start and flush log, count and keep the rows."""
    (tmp_path / "not-a-dir").write_text("x")
    led = Ledger(open_ledger_store(f"sqlite:///{tmp_path / 'not-a-dir' / 'usage.db'}"), clock=clock)
    await led.start()
    try:
        led.record(
            key="k", tenant="t", model="m", deployment="d", usage=None, cost=None, error=True
        )
        await led.flush()
        assert led.stats.flush_failures == 1
        assert led.stats.pending_rows == 1
    finally:
        await led.aclose()


async def test_start_runs_the_background_flush_and_aclose_stops_it(clock: ManualClock) -> None:
    led = Ledger(MemoryLedgerStore(), clock=clock, flush_interval=3600)
    await led.start()
    await led.start()  # idempotent
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == "hotpath-ledger-flush"]
    assert len(tasks) == 1
    await led.aclose()
    assert tasks[0].done()
    with pytest.raises(RuntimeError, match="closed"):
        await led.start()


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"by": ("colour",)}, ["by", "'colour'"]),
        ({"by": ("model", "model")}, ["by", "'model'"]),
        ({"by": 3}, ["by", "3"]),
        ({"since": "yesterday"}, ["since", "'yesterday'"]),
        ({"until": "2026-02-30"}, ["until", "'2026-02-30'"]),
        ({"since": "20261202"}, ["since", "'20261202'"]),
        ({"since": "2026-12-03", "until": "2026-12-02"}, ["since", "until"]),
        ({"where": {"colour": "red"}}, ["where", "'colour'"]),
        ({"where": {"tenant": 3}}, ["where", "3"]),
    ],
)
async def test_bad_report_arguments(
    clock: ManualClock, kwargs: dict[str, object], names: list[str]
) -> None:
    led = Ledger(MemoryLedgerStore(), clock=clock)
    with pytest.raises(ConfigError) as info:
        await led.report(**kwargs)  # type: ignore[arg-type]
    assert all(name in str(info.value) for name in names), str(info.value)


async def test_a_single_dimension_name_is_accepted(clock: ManualClock) -> None:
    led = Ledger(MemoryLedgerStore(), clock=clock)
    led.record(key="k", tenant="t", model="m", deployment="d", usage=Usage(1, 1), cost=0.1)
    rows = await led.report(by="tenant")
    assert [r.group for r in rows] == [{"tenant": "t"}]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("ftp://x", "'ftp://x'"),
        ("sqlite://host/usage.db", "'sqlite://host/usage.db'"),
        ("sqlite:///", "'sqlite:///'"),
        ("memory://x", "'memory://x'"),
        ("redis://h:6379/0?socket_timeout=abc", "socket_timeout"),
    ],
)
def test_bad_store_url(url: str, shown: str) -> None:
    with pytest.raises(ConfigError, match="url") as info:
        open_ledger_store(url)
    assert shown in str(info.value)


def test_redis_url_password_is_not_shown() -> None:
    with pytest.raises(ConfigError) as info:
        open_ledger_store("redis://u:secret@h:6379/0?socket_timeout=abc")
    assert "secret" not in str(info.value)
    store = open_ledger_store("redis://u:secret@h:6379/0")
    assert "secret" not in repr(store)


def test_store_urls_pick_the_backend(tmp_path: Path) -> None:
    assert isinstance(open_ledger_store("memory://"), MemoryLedgerStore)
    sqlite = open_ledger_store(f"sqlite:///{tmp_path / 'u.db'}")
    assert isinstance(sqlite, SqliteLedgerStore)
    assert sqlite.path == tmp_path / "u.db"
    assert not (tmp_path / "u.db").exists()  # nothing happens before open()
    for url in ("redis://127.0.0.1:6379/0", "rediss://h:6380/1", "unix:///tmp/redis.sock"):
        store = open_ledger_store(url, prefix="x:")
        assert isinstance(store, RedisLedgerStore)
        assert store.prefix == "x:"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"flush_interval": 0}, "flush_interval"),
        ({"flush_interval": float("nan")}, "flush_interval"),
        ({"retention_days": 0}, "retention_days"),
        ({"retention_days": 1.5}, "retention_days"),
    ],
)
def test_bad_ledger_options(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Ledger(MemoryLedgerStore(), **kwargs)  # type: ignore[arg-type]


def test_store_must_be_a_ledger_store() -> None:
    with pytest.raises(ConfigError, match="store"):
        Ledger(object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"cost": -0.1}, "cost"),
        ({"cost": float("inf")}, "cost"),
        ({"cost": "0.1"}, "cost"),
        ({"usage": {"prompt_tokens": 1}}, "usage"),
        ({"tenant": None}, "tenant"),
        ({"model": 3}, "model"),
    ],
)
def test_bad_record_arguments(clock: ManualClock, kwargs: dict[str, object], name: str) -> None:
    """A bad call raises and counts nothing."""
    led = Ledger(MemoryLedgerStore(), clock=clock)
    call: dict[str, object] = {
        "key": "k",
        "tenant": "t",
        "model": "m",
        "deployment": "d",
        "usage": Usage(1, 1),
        "cost": 0.1,
        **kwargs,
    }
    with pytest.raises(ConfigError, match=name):
        led.record(**call)  # type: ignore[arg-type]
    assert led.stats.pending_rows == 0
    assert led.stats.recorded == 0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"latency": -1.0}, "latency"),
        ({"latency": float("nan")}, "latency"),
        ({"kind": "miss"}, "kind"),
        ({"cost": -1}, "cost"),
    ],
)
def test_bad_saving_arguments(clock: ManualClock, kwargs: dict[str, object], name: str) -> None:
    led = Ledger(MemoryLedgerStore(), clock=clock)
    call: dict[str, object] = {
        "key": "k",
        "tenant": "t",
        "model": "m",
        "deployment": "d",
        "cost": 0.1,
        "latency": 0.2,
        **kwargs,
    }
    with pytest.raises(ConfigError, match=name):
        led.record_saving(**call)  # type: ignore[arg-type]
    assert led.stats.pending_rows == 0


def test_spend_row_to_dict_and_counters() -> None:
    row = SpendRow(
        group={"tenant": "acme"},
        requests=1,
        prompt_tokens=2,
        completion_tokens=3,
        cached_tokens=1,
        cost_usd=0.5,
        unknown_cost=0,
        estimated=0,
        errors=0,
        cache_hits=1,
        coalesced=0,
        saved_usd=0.25,
        saved_unknown=0,
        saved_latency_s=1.5,
    )
    d = row.to_dict()
    assert d["group"] == {"tenant": "acme"}
    assert d["cost_usd"] == 0.5
    assert set(d) == {"group"} | {f for f in SpendRow.__dataclass_fields__ if f != "group"}
    assert len(COUNTERS) == 13
