"""What cost accounting adds to each gateway request: booking, budgets, the ledger flush.

Run: ``python -m bench.cost_path``; needs Redis (REDIS_URL, else 127.0.0.1:6379).
Writes ``bench/results/cost_path.md``; takes ~45 s.

1. *Booking*: :meth:`GatewayCost.book` of a call with its usage (price lookup and
   cost, four Prometheus counters, :meth:`Ledger.record`) and
   :meth:`GatewayCost.book_saving` of a cache hit, with their parts timed alone,
   against a plain ``dict`` increment of the same 5-tuple row key.
2. *Budgets in the process*: :meth:`Budgets.reserve` then :meth:`Budgets.settle`
   on a :class:`LocalBudgetStore`, over 1 and 3 rules, and as the gateway does it
   (:meth:`GatewayCost.reserve` and its inline settle), against the same ``dict``
   increment; and the prompt count a budget makes every request pay for.
3. *Budgets in Redis*: the same on a :class:`RedisBudgetStore` (an EVALSHA each),
   timed call by call, against a raw redis-py PING, one EVALSHA of ``return 1``
   and two of them in a row (the floor of reserve + settle).
4. *The ledger flush* of N distinct rows to SQLite and to Redis, against a raw
   ``sqlite3`` ``executemany`` of the same upserts in one transaction and a raw
   redis-py pipeline of the same HINCRBYs (and, for reference, the same HINCRBYs
   in one Lua loop).
5. *A whole request* through the :class:`Gateway` ASGI app, called in-process
   (no server, no socket) with a provider that answers at once: the cache off
   (every request calls the upstream) with the usage ledger off, on, on with 3
   budgets in the process and on with 3 budgets in Redis; a cache hit with the
   ledger off and on. "Ledger off" is ``CostConfig(enabled=False)``: the call is
   still priced and counted in Prometheus, not recorded.

In-process figures (1, 2, 5) use ``bench.timing`` (ns per call over batches,
median and p99 across batches); Redis figures (3) time each call; flush figures
(4) time each flush. Each is taken in ``ROUNDS`` interleaved rounds with its
baseline; the table shows the median over rounds and, as the ratio, the median of
per-round ratios.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from bench.timing import Figure, machine, time_async, time_sync
from hotpath._clock import SystemClock
from hotpath.cost._budget import BudgetHold, BudgetRule, Budgets
from hotpath.cost._budget_redis import RedisBudgetStore
from hotpath.cost._budget_store import LocalBudgetStore
from hotpath.cost._ledger import Ledger
from hotpath.cost._ledger_stores import _SCHEMA, _UPSERT, RedisLedgerStore, SqliteLedgerStore
from hotpath.cost._prices import PriceTable
from hotpath.cost._usage import Usage
from hotpath.gateway import CacheConfig, Gateway, GatewayConfig, ModelRoute, UpstreamConfig
from hotpath.gateway._cost import GatewayCost
from hotpath.gateway._cost_config import CostConfig
from hotpath.gateway._metrics import GatewayMetrics
from hotpath.gateway._tokens import count_request

RESULTS = Path(__file__).parent / "results" / "cost_path.md"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
ROUNDS = 5
REDIS_CALLS = 300  # per variant per round, each timed
FLUSHES = 12  # per size per store per round, each timed
SIZES = (10, 100, 1000)

MODEL = "gpt-4o-mini"
USAGE = Usage(prompt_tokens=420, completion_tokens=180)
CALL = {
    "key": "k-alice",
    "tenant": "acme",
    "model": MODEL,
    "deployment": "openai-main",
    "upstream_model": MODEL,
}
# Never reached in a run (a call reserves about $0.0004): every call goes.
ROOMY = 1e6
ONE_RULE = (BudgetRule(scope="global", limit_usd=ROOMY),)
THREE_RULES = (
    BudgetRule(scope="global", limit_usd=ROOMY),
    BudgetRule(scope="key", limit_usd=ROOMY),
    BudgetRule(scope="tenant", limit_usd=ROOMY, period="day"),
)
BODY = {
    "model": MODEL,
    "messages": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "Summarize the plot of Hamlet in two sentences."},
    ],
}
ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "A prince avenges his father."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 28, "completion_tokens": 7, "total_tokens": 35},
    }
)

DICT = "dict += of a 5-tuple key"
PING = "redis-py PING"
EVALSHA = "redis-py EVALSHA of `return 1`"
EVALSHA2 = "redis-py EVALSHA of `return 1`, twice"
SQLITE = "sqlite3 executemany, one transaction"
PIPELINE = "redis-py pipeline of the HINCRBYs"
MISS = "miss, ledger off"
HIT = "hit, ledger off"
LUA_LOOP = """
for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 0
"""
# name, figure, ratio and added ns (medians of per-round values), baseline ("": a baseline)
Row = tuple[str, Figure, float, float, str]


def _median(figures: list[Figure]) -> Figure:
    return Figure(
        statistics.median(f.median_ns for f in figures),
        statistics.median(f.p99_ns for f in figures),
    )


def _rows(runs: dict[str, list[Figure]], bases: Mapping[str, str]) -> list[Row]:
    """One row per variant: median figure over rounds; median per-round ratio to its
    baseline and median per-round difference of medians."""
    out = []
    for name, figs in runs.items():
        base = bases.get(name, "")
        ratio = added = 0.0
        if base:
            pairs = list(zip(figs, runs[base], strict=True))
            ratio = statistics.median(f.ratio(b) for f, b in pairs)
            added = statistics.median(f.median_ns - b.median_ns for f, b in pairs)
        out.append((name, _median(figs), ratio, added, base))
    return out


def _each(samples: list[int]) -> Figure:
    """Median and p99 of individually timed calls."""
    samples.sort()
    return Figure(
        statistics.median(samples), samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
    )


# -- 1 and 2: booking and budgets in the process ---------------------------------------


def _cost(budgets: tuple[BudgetRule, ...] = (), *, enabled: bool = True) -> GatewayCost:
    upstream = UpstreamConfig(name="mock", base_url="http://127.0.0.1:9/v1")
    config = GatewayConfig(
        upstreams=(upstream,),
        models={"*": ModelRoute(upstream="mock")},
        cost=CostConfig(store="memory://", budgets=budgets, enabled=enabled),
    )
    return GatewayCost(config, GatewayMetrics(), SystemClock(), redis_url=None)


def _budgets(rules: tuple[BudgetRule, ...], store: Any = None, prefix: str = "") -> Budgets:
    return Budgets(rules, store=store or LocalBudgetStore(), prefix=prefix, clock=SystemClock())


async def _reserve_settle(budgets: Budgets) -> None:
    hold = await budgets.reserve(
        key="k-alice", tenant="acme", model=MODEL, estimate=0.0004, downgrade_estimate=None
    )
    await budgets.settle(hold, 0.0003)


def in_process() -> list[Row]:
    """Booking and local budgets, in ``ROUNDS`` interleaved rounds."""
    booking = _cost()
    unledgered = _cost(enabled=False)
    prices = PriceTable.default()
    ledger = booking.ledger
    assert ledger is not None
    one = _budgets(ONE_RULE)
    three = _budgets(THREE_RULES)
    gateway = _cost(THREE_RULES)
    plain: dict[tuple[str, str, str, str, str], int] = {}
    row = ("2026-12-02", "k-alice", "acme", MODEL, "openai-main")

    def dict_inc() -> None:
        plain[row] = plain.get(row, 0) + 1

    def book() -> object:
        return booking.book(usage=USAGE, **CALL)

    def book_saving() -> None:
        booking.book_saving(usage=USAGE, latency=0.42, how="hit", **CALL)

    def record() -> None:
        ledger.record(
            key="k-alice",
            tenant="acme",
            model=MODEL,
            deployment="openai-main",
            usage=USAGE,
            cost=0.0002,
        )

    sync: dict[str, Callable[[], object]] = {
        DICT: dict_inc,
        "PriceTable.cost": lambda: prices.cost(MODEL, USAGE),
        "Ledger.record": record,
        "GatewayCost.book, ledger off (price + 4 counters)": lambda: unledgered.book(
            usage=USAGE, **CALL
        ),
        "GatewayCost.book (price + 4 counters + Ledger.record)": book,
        "GatewayCost.book_saving (a hit)": book_saving,
        "count_request (the prompt count budgets need)": lambda: count_request(BODY, MODEL, 256),
    }

    async def gateway_reserve_settle() -> None:
        hold = await gateway.reserve(
            key="k-alice", tenant="acme", model=MODEL, estimate=0.0004, downgrade_estimate=None
        )
        gateway.settle(hold, 0.0003)  # in the process: inline, no task

    budget_ops: dict[str, Callable[[], Awaitable[object]]] = {
        "Budgets.reserve + settle, 1 rule": lambda: _reserve_settle(one),
        "Budgets.reserve + settle, 3 rules": lambda: _reserve_settle(three),
        "as the gateway does it, 3 rules: GatewayCost.reserve (+ gauges) and settle": (
            gateway_reserve_settle
        ),
    }

    async def timed_budgets() -> dict[str, Figure]:
        return {name: await time_async(fn) for name, fn in budget_ops.items()}

    runs: dict[str, list[Figure]] = {name: [] for name in [*sync, *budget_ops]}
    for _ in range(ROUNDS):
        for name, fn in sync.items():
            runs[name].append(time_sync(fn))
        for name, fig in asyncio.run(timed_budgets()).items():
            runs[name].append(fig)
    refused = one.stats.refused + three.stats.refused + gateway.budgets.stats.refused
    assert refused == 0, "a roomy budget refused a call"
    return _rows(runs, dict.fromkeys(runs, DICT) | {DICT: ""})


# -- 3: budgets in Redis -----------------------------------------------------------------


async def in_redis() -> tuple[list[Row], str]:
    prefix = f"hpbench:cost:{uuid.uuid4().hex[:8]}:"
    raw = aioredis.Redis.from_url(REDIS_URL)
    one = _budgets(ONE_RULE, RedisBudgetStore(REDIS_URL, prefix=prefix), prefix)
    three = _budgets(THREE_RULES, RedisBudgetStore(REDIS_URL, prefix=prefix), prefix)
    try:
        server = str((await raw.info("server"))["redis_version"])
        sha = str(await raw.script_load("return 1"))

        async def evalsha_twice() -> None:
            await raw.evalsha(sha, 0)
            await raw.evalsha(sha, 0)

        async def reserve_only() -> BudgetHold | None:
            # The request waits for this; the gateway settles in the background.
            hold = await three.reserve(
                key="k-alice", tenant="acme", model=MODEL, estimate=0.0004, downgrade_estimate=None
            )
            holds.append(hold)
            return hold

        holds: list[BudgetHold | None] = []
        variants: dict[str, Callable[[], Awaitable[object]]] = {
            PING: raw.ping,
            EVALSHA: lambda: raw.evalsha(sha, 0),
            EVALSHA2: evalsha_twice,
            "Budgets.reserve, 3 rules (in the request's path)": reserve_only,
            "Budgets.reserve + settle, 1 rule": lambda: _reserve_settle(one),
            "Budgets.reserve + settle, 3 rules": lambda: _reserve_settle(three),
        }
        clock = time.perf_counter_ns
        runs: dict[str, list[Figure]] = {name: [] for name in variants}
        for round_ in range(ROUNDS + 1):  # the first warms up: connections, script cache
            for name, fn in variants.items():
                samples = []
                for _ in range(REDIS_CALLS):
                    t0 = clock()
                    await fn()
                    samples.append(clock() - t0)
                if round_:
                    runs[name].append(_each(samples))
            for hold in holds:
                await three.settle(hold, 0.0003)
            holds.clear()
        for budgets in (one, three):
            assert budgets.stats.store_errors == 0, "the budget store failed during the run"
            assert budgets.stats.refused == 0, "a roomy budget refused a call"
        bases = {
            PING: "",
            EVALSHA: PING,
            EVALSHA2: PING,
            "Budgets.reserve, 3 rules (in the request's path)": EVALSHA,
            "Budgets.reserve + settle, 1 rule": EVALSHA2,
            "Budgets.reserve + settle, 3 rules": EVALSHA2,
        }
        return _rows(runs, bases), server
    finally:
        await one.aclose()
        await three.aclose()
        keys = [k async for k in raw.scan_iter(match=f"{prefix}*")]
        if keys:
            await raw.delete(*keys)
        await raw.aclose()


# -- 4: the ledger flush -------------------------------------------------------------------


def _record(ledger: Ledger, n: int) -> None:
    for i in range(n):
        ledger.record(
            key=f"k-{i:04d}",
            tenant="acme",
            model=MODEL,
            deployment="openai-main",
            usage=USAGE,
            cost=0.0002,
        )


async def flushes(directory: Path) -> list[Row]:
    """Each flush timed alone, after recording ``n`` distinct rows (untimed)."""
    prefix = f"hpbench:cost:{uuid.uuid4().hex[:8]}:"
    sqlite_ledger = Ledger(SqliteLedgerStore(directory / "usage.db"), flush_interval=3600)
    redis_ledger = Ledger(RedisLedgerStore(REDIS_URL, prefix=prefix), flush_interval=3600)
    conn = sqlite3.connect(directory / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL").fetchone()
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(_SCHEMA)
    raw = aioredis.Redis.from_url(REDIS_URL)
    loop_sha = ""
    day = time.strftime("%Y-%m-%d", time.gmtime())
    # Requests, prompt, completion and cost: the non-zero counters of one call.
    counts = (1, USAGE.prompt_tokens, USAGE.completion_tokens, 0, 200_000) + (0,) * 8

    def raw_sqlite(n: int) -> None:
        params = [(day, f"k-{i:04d}", "acme", MODEL, "openai-main", *counts) for i in range(n)]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(_UPSERT, params)
        conn.execute("COMMIT")

    def increments(n: int) -> list[tuple[str, int]]:
        out = []
        for i in range(n):
            base = f"k-{i:04d}\x1facme\x1f{MODEL}\x1fopenai-main\x1f"
            out += [
                (base + "requests", 1),
                (base + "prompt_tokens", USAGE.prompt_tokens),
                (base + "completion_tokens", USAGE.completion_tokens),
                (base + "cost_nanos", 200_000),
            ]
        return out

    async def raw_redis(n: int) -> None:
        pipe = raw.pipeline(transaction=False)
        hkey = f"{prefix}raw:{day}"
        for field, value in increments(n):
            pipe.hincrby(hkey, field, value)
        await pipe.execute()

    async def lua_loop(n: int) -> None:
        args: list[str | int] = []
        for field, value in increments(n):
            args += (field, value)
        await raw.evalsha(loop_sha, 1, f"{prefix}lua:{day}", *args)

    async def ledger_flush(ledger: Ledger, n: int) -> None:
        _record(ledger, n)
        t0 = time.perf_counter_ns()
        await ledger.flush()
        samples.append(time.perf_counter_ns() - t0)

    async def timed(fn: Callable[[int], Awaitable[None] | None], n: int) -> None:
        t0 = time.perf_counter_ns()
        pending = fn(n)
        if pending is not None:
            await pending
        samples.append(time.perf_counter_ns() - t0)

    variants: dict[str, Callable[[int], Awaitable[None]]] = {
        SQLITE: lambda n: timed(raw_sqlite, n),
        "Ledger.flush to SQLite": lambda n: ledger_flush(sqlite_ledger, n),
        PIPELINE: lambda n: timed(raw_redis, n),
        "Ledger.flush to Redis": lambda n: ledger_flush(redis_ledger, n),
        "the same HINCRBYs in one EVALSHA (a Lua loop; reference)": lambda n: timed(lua_loop, n),
    }
    bases = {
        "Ledger.flush to SQLite": SQLITE,
        "Ledger.flush to Redis": PIPELINE,
        "the same HINCRBYs in one EVALSHA (a Lua loop; reference)": PIPELINE,
    }
    samples: list[int] = []
    rows: list[Row] = []
    try:
        loop_sha = str(await raw.script_load(LUA_LOOP))
        await sqlite_ledger.start()
        await redis_ledger.start()
        for n in SIZES:
            runs: dict[str, list[Figure]] = {f"{name}, {n} rows": [] for name in variants}
            for round_ in range(ROUNDS + 1):  # the first warms up (and inserts the rows)
                for name, fn in variants.items():
                    samples = []
                    for _ in range(FLUSHES):
                        await fn(n)
                    if round_:
                        runs[f"{name}, {n} rows"].append(_each(samples))
            rows += _rows(runs, {f"{k}, {n} rows": f"{v}, {n} rows" for k, v in bases.items()})
        for ledger in (sqlite_ledger, redis_ledger):
            stats = ledger.stats
            assert stats.flush_failures == 0 and not stats.pending_rows, f"{ledger!r}: {stats}"
        return rows
    finally:
        await sqlite_ledger.aclose()
        await redis_ledger.aclose()
        conn.close()
        keys = [k async for k in raw.scan_iter(match=f"{prefix}*")]
        if keys:
            await raw.delete(*keys)
        await raw.aclose()


# -- 5: whole requests through the gateway ---------------------------------------------------


@dataclass
class InstantProvider:
    """An upstream (the gateway's ``Provider`` interface) that answers at once,
    in-process: the request's cost without a network hop."""

    name: str = "mock"
    kind: str = "openai"
    on_response: Any = None

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def chat(
        self, body: Mapping[str, Any], deployment: str, headers: Mapping[str, str] | None = None
    ) -> bytes:
        return ANSWER

    def chat_stream(
        self, body: Mapping[str, Any], deployment: str, headers: Mapping[str, str] | None = None
    ) -> AsyncGenerator[bytes, None]:
        raise NotImplementedError("the bench sends no streams")

    async def embeddings(
        self, body: Mapping[str, Any], deployment: str, headers: Mapping[str, str] | None = None
    ) -> bytes:
        raise NotImplementedError("the bench sends no embeddings")

    async def models(self) -> list[dict[str, Any]]:
        return []


def _gateway(
    namespace: str,
    *,
    cache: bool,
    ledger: bool,
    budgets: tuple[BudgetRule, ...] = (),
    budget_store: str | None = None,
) -> Gateway:
    """A gateway over :class:`InstantProvider`; its Redis keys (if any) under
    ``namespace``."""
    upstream = UpstreamConfig(name="mock", base_url="http://127.0.0.1:9/v1")
    cache_config = (
        CacheConfig(tiers=("memory://",), namespace=namespace)
        if cache
        else CacheConfig(enabled=False, namespace=namespace)
    )
    cost = CostConfig(store="memory://", enabled=ledger, budgets=budgets, budget_store=budget_store)
    config = GatewayConfig(
        upstreams=(upstream,),
        models={"*": ModelRoute(upstream="mock")},
        cache=cache_config,
        cost=cost,
    )
    return Gateway(config, providers={"mock": InstantProvider()})


class Client:
    """Calls the ASGI app as a server would: one POST, the response discarded."""

    def __init__(self, app: Gateway) -> None:
        self.app = app
        self.body = orjson.dumps(BODY)
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/chat/completions",
            "raw_path": b"/v1/chat/completions",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1:8080"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(self.body)).encode()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8080),
        }
        self.status = 0

    async def post(self) -> None:
        sent = False
        never = asyncio.get_running_loop().create_future()

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": self.body, "more_body": False}
            await never  # the client stays: the disconnect watcher waits here
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]

        await self.app(self.scope, receive, send)
        never.cancel()
        if self.status != 200:
            raise RuntimeError(f"the gateway answered {self.status}")


async def whole_requests() -> list[Row]:
    namespace = f"hpbench:cost:{uuid.uuid4().hex[:8]}"
    apps = {
        MISS: _gateway(namespace, cache=False, ledger=False),
        "miss, ledger on": _gateway(namespace, cache=False, ledger=True),
        "miss, ledger on, 3 budgets in the process": _gateway(
            namespace, cache=False, ledger=True, budgets=THREE_RULES
        ),
        "miss, ledger on, 3 budgets in Redis": _gateway(
            namespace, cache=False, ledger=True, budgets=THREE_RULES, budget_store=REDIS_URL
        ),
        HIT: _gateway(namespace, cache=True, ledger=False),
        "hit, ledger on": _gateway(namespace, cache=True, ledger=True),
    }
    clients = {name: Client(app) for name, app in apps.items()}
    try:
        for app in apps.values():
            await app.start()
        for client in clients.values():
            # The first answer is stored by its flight's task once the loop turns;
            # in-process requests never yield on their own, so let it turn now (else
            # every later "hit" would join the finished flight instead of hitting).
            await client.post()
            await asyncio.sleep(0.01)
        for name, app in apps.items():
            if app.cache is not None:
                assert app.cache.stats().tiers[0].sets == 1, name
        runs: dict[str, list[Figure]] = {name: [] for name in apps}
        for _ in range(ROUNDS):
            for name, client in clients.items():
                runs[name].append(await time_async(client.post, batch=20, batches=100))
        for name, app in apps.items():
            stats = app.state.cost.budgets.stats
            assert stats.store_errors == stats.refused == 0, f"{name}: {stats}"
        ledger = apps["miss, ledger on"].state.cost.ledger
        assert ledger is not None and ledger.stats.recorded > 0, "nothing was booked"
        bases = {name: HIT if name.startswith("hit") else MISS for name in apps}
        return _rows(runs, bases | {MISS: "", HIT: ""})
    finally:
        for app in apps.values():
            await app.aclose()
        raw = aioredis.Redis.from_url(REDIS_URL)
        keys = [k async for k in raw.scan_iter(match=f"{namespace}:*")]
        if keys:
            await raw.delete(*keys)
        await raw.aclose()


# -- report ------------------------------------------------------------------------------------


def _table(rows: list[Row], *, added: bool = False) -> list[str]:
    """Markdown rows; a row whose baseline is "" is a baseline."""
    head = "| operation | median µs | p99 µs | ratio to baseline |"
    rule = "|---|---:|---:|---|"
    if added:
        head += " added over baseline, µs |"
        rule += "---:|"
    lines = [head, rule]
    for name, fig, ratio, extra, base in rows:
        line = f"| {name} | {fig.median_ns / 1000:.2f} | {fig.p99_ns / 1000:.2f} | "
        line += f"{ratio:.2f}x {base} |" if base else "baseline |"
        if added:
            line += f" {extra / 1000:+.2f} |" if base else " |"
        lines.append(line)
    return lines


def report(
    local: list[Row], redis: list[Row], server: str, flush: list[Row], whole: list[Row]
) -> str:
    lines = [
        "# Cost accounting on the request path",
        "",
        f"`python -m bench.cost_path` on {time.strftime('%Y-%m-%d')}; {machine()}; "
        f"Redis {server} on loopback, redis-py {version('redis')}, hiredis {version('hiredis')}. "
        f"Median of {ROUNDS} interleaved rounds; the ratio is the median of per-round "
        "ratios to the baseline named.",
        "",
        "### Booking and budgets in the process",
        "",
        "Per call, timed in batches (`bench.timing`): median and p99 across batches. "
        "Booking: a call of 420 prompt and 180 completion tokens on gpt-4o-mini. "
        "Budgets: `Budgets.reserve` (estimate $0.0004) then `settle` on a `LocalBudgetStore`; "
        "rules (global, key, tenant) never reached. The gateway's own way adds the "
        "budget gauges and settles inline (the store is in the process).",
        "",
        *_table(local),
        "",
        "### Budgets in Redis",
        "",
        f"{REDIS_CALLS} sequential awaits per variant per round, each timed: median and p99 "
        "over the calls of a round. Reserve and settle are one EVALSHA each; the gateway "
        "awaits both (the settle before the answer goes out).",
        "",
        *_table(redis, added=True),
        "",
        "### The usage ledger's flush",
        "",
        f"{FLUSHES} flushes per variant per round, each timed alone after recording N "
        "distinct rows (one call each, 4 non-zero counters); the rows exist already "
        "(upserts). Baselines: the same upserts in one `executemany` transaction on the "
        "calling thread (same file settings: WAL, synchronous=NORMAL); the same HINCRBYs "
        "in one redis-py pipeline. The Lua loop is a reference for a one-command flush: "
        "a redis-py pipeline packs and parses each command in Python, on the event loop.",
        "",
        *_table(flush, added=True),
        "",
        "### A whole request through the gateway",
        "",
        "The `Gateway` ASGI app called in-process (no server, no socket) with a provider "
        "that answers at once; non-streamed chat completion, no rate limits, no keys. "
        "Miss: cache off, every request calls the upstream and is booked; hit: memory tier. "
        "Ledger off is `CostConfig(enabled=False)` (still priced and counted in /metrics). "
        "Budgets: the 3 rules above; in Redis, the reserve and the settle are both awaited "
        "(the settle before the answer goes out, so the next request meets the real spend).",
        "",
        *_table(whole, added=True),
        "",
    ]
    return "\n".join(lines)


async def main_async(directory: Path) -> tuple[list[Row], str, list[Row], list[Row]]:
    redis, server = await in_redis()
    flush = await flushes(directory)
    whole = await whole_requests()
    return redis, server, flush, whole


def main() -> None:
    started = time.perf_counter()
    local = in_process()
    with tempfile.TemporaryDirectory(prefix="hotpath-cost-bench-") as d:
        redis, server, flush, whole = asyncio.run(main_async(Path(d)))
    text = report(local, redis, server, flush, whole)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text, encoding="utf-8")
    print(text)
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
