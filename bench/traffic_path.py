"""What traffic control adds to each gateway request, local and Redis-backed.

Run: ``python -m bench.traffic_path``; writes ``bench/results/traffic_path.md``.

The gateway's own composition (:class:`hotpath.gateway._traffic.Traffic`) is driven
in-process, without HTTP, around an upstream call that returns at once, so the
figures are the policies' cost and nothing else:

- *front-door decision*: ``admit`` over three rpm limits (key, tenant, global);
  local (GCRA in a dict) and shared (one Lua script over Redis);
- *attempt path*: ``execute`` around the call: router pick, provider pacing
  check, breaker permit and outcome, adaptive-concurrency permit and sample,
  retry state, metrics;
- the whole request: both.

Baselines from the same run: the bare ``await`` of the call; a raw ``dict``
get+set; a raw redis-py ``PING`` and ``EVALSHA`` of a trivial script (the floor
of any one-round-trip decision). Figures are median and p99 over batches, in
``ROUNDS`` interleaved rounds; the table shows the median round.
"""

from __future__ import annotations

import asyncio
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aredis

from bench.timing import Figure, machine, time_async, time_sync
from hotpath._clock import SystemClock
from hotpath.gateway import GatewayConfig, LimitRule, ModelRoute, TrafficConfig, UpstreamConfig
from hotpath.gateway._metrics import GatewayMetrics
from hotpath.gateway._resolve import Resolved, Route
from hotpath.gateway._state import State
from hotpath.gateway._tokens import reserve_tokens
from hotpath.gateway._traffic import Traffic
from hotpath.gateway._traffic_context import CallContext
from hotpath.providers._build import build_provider

RESULTS = Path(__file__).parent / "results" / "traffic_path.md"
REDIS_URL = "redis://127.0.0.1:6379/0"
ROUNDS = 5
LIMITS = (
    LimitRule(scope="key", rpm=1e12),
    LimitRule(scope="tenant", rpm=1e12),
    LimitRule(scope="global", rpm=1e12),
)
# The same with a token limit: the prompt counted, reserved, then settled.
TOKEN_LIMITS = (*LIMITS, LimitRule(scope="model", tpm=1e15))
BODY = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "Summarize the plot of Hamlet in two sentences."},
    ],
}


def _state(redis_url: str, limits: tuple[LimitRule, ...] = LIMITS) -> State:
    upstream = UpstreamConfig(name="mock", base_url="http://127.0.0.1:9/v1")
    config = GatewayConfig(
        upstreams=(upstream,),
        models={"*": ModelRoute(upstream="mock")},
        traffic=TrafficConfig(limits=limits, redis_url=redis_url),
    )
    providers = {"mock": build_provider(upstream)}
    return State(config, providers, None, GatewayMetrics(), SystemClock())


async def _call(route: Route, resolved: Resolved) -> int:
    return 1


def _never() -> bool:
    return False


class RequestPath:
    """One request's traffic path on a :class:`Traffic`."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.traffic: Traffic = state.traffic
        self.resolved = state.resolve("gpt-4o-mini")

    def ctx(self) -> CallContext:
        ctx = CallContext(priority="standard", max_wait=10.0)
        ctx.deadline = self.traffic.clock.monotonic() + 10.0
        return ctx

    async def admit(self) -> object:
        return await self.traffic.limits.admit(self.ctx(), key="alice", tenant="acme", model="m")

    async def attempt(self) -> int:
        return await self.traffic.execute(
            self.resolved, self.state.resolve, self.ctx(), _call, _never
        )

    async def tokens(self) -> None:
        """A request under a token limit: count its prompt, reserve, settle."""
        ctx = self.ctx()
        ctx.tokens, ctx.context_tokens = reserve_tokens(BODY, "gpt-4o-mini", 256)
        limits = self.traffic.limits
        reservation = await limits.admit(ctx, key="alice", tenant="acme", model="m")
        limits.settle(reservation, 60)

    async def whole(self) -> int:
        ctx = self.ctx()
        await self.traffic.limits.admit(ctx, key="alice", tenant="acme", model="m")
        return await self.traffic.execute(self.resolved, self.state.resolve, ctx, _call, _never)


async def _round(
    local: RequestPath, tokens: RequestPath, shared: RequestPath, client: Any, sha: str
) -> dict[str, Figure]:
    route = local.resolved.primary
    resolved = local.resolved
    plain: dict[str, int] = {}

    def dict_op() -> None:
        plain["k"] = plain.get("k", 0) + 1

    async def bare() -> int:
        return await _call(route, resolved)

    out = {
        "dict get+set": time_sync(dict_op, batch=1000, batches=200),
        "bare await of the call": await time_async(bare, batch=200, batches=200),
        "local: front-door decision (3 limits)": await time_async(local.admit),
        "local: attempt path": await time_async(local.attempt),
        "local: whole request": await time_async(local.whole),
        "local: with a token limit (count, reserve, settle)": await time_async(tokens.tokens),
    }
    out["redis-py PING"] = await time_async(client.ping, batch=50, batches=200)
    out["redis-py EVALSHA (trivial script)"] = await time_async(
        lambda: client.evalsha(sha, 0), batch=50, batches=200
    )
    out["redis: front-door decision (3 limits)"] = await time_async(
        shared.admit, batch=50, batches=200
    )
    out["redis: whole request"] = await time_async(shared.whole, batch=50, batches=200)
    return out


async def main_async() -> str:
    local = RequestPath(_state(""))
    tokens = RequestPath(_state("", TOKEN_LIMITS))
    shared = RequestPath(_state(REDIS_URL))
    await local.traffic.start()
    await shared.traffic.start()
    client = aredis.Redis.from_url(REDIS_URL)
    sha = await client.script_load("return 1")
    rounds = [await _round(local, tokens, shared, client, sha) for _ in range(ROUNDS)]
    await client.aclose()
    await local.traffic.aclose()
    await shared.traffic.aclose()

    def med(name: str) -> Figure:
        figures = [r[name] for r in rounds]
        return Figure(
            statistics.median(f.median_ns for f in figures),
            statistics.median(f.p99_ns for f in figures),
        )

    def ratio(name: str, base: str) -> float:
        return statistics.median(r[name].ratio(r[base]) for r in rounds)

    bare = med("bare await of the call")
    lines = [
        "## Traffic control on the request path",
        "",
        f"{machine()}, {datetime.now(UTC):%Y-%m-%d}. `python -m bench.traffic_path`: "
        f"median of {ROUNDS} interleaved rounds, each the median and p99 over batches.",
        "",
        "| operation | median µs | p99 µs | added over the bare call, µs | ratio to baseline |",
        "|---|---|---|---|---|",
    ]
    rows = [
        ("dict get+set", None),
        ("bare await of the call", None),
        ("local: front-door decision (3 limits)", "dict get+set"),
        ("local: attempt path", "bare await of the call"),
        ("local: whole request", "bare await of the call"),
        ("local: with a token limit (count, reserve, settle)", "dict get+set"),
        ("redis-py PING", None),
        ("redis-py EVALSHA (trivial script)", "redis-py PING"),
        ("redis: front-door decision (3 limits)", "redis-py PING"),
        ("redis: whole request", "redis-py PING"),
    ]
    for name, base in rows:
        fig = med(name)
        added = (
            (fig.median_ns - bare.median_ns) / 1000
            if name.endswith("request") or ("attempt" in name)
            else None
        )
        lines.append(
            f"| {name} | {fig.median_ns / 1000:.2f} | {fig.p99_ns / 1000:.2f} | "
            f"{'' if added is None else f'{added:.2f}'} | "
            f"{'' if base is None else f'{ratio(name, base):.2f}x {base}'} |"
        )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    text = asyncio.run(main_async())
    RESULTS.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
