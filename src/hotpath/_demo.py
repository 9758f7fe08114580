"""``hotpath demo``: an agent workload straight to a slow LLM, then through the gateway.

Starts the mock upstream (300 ms to first token, then 200 tokens/s by default) and
the gateway on the embedded default cache (a small memory tier, then SQLite in a
temporary directory), replays the same seeded workload (:mod:`hotpath._demo_workload`)
once straight to the upstream and once through hotpath, and prints both side by
side. Everything listens on 127.0.0.1: no Redis, no API key, nothing written
outside the temporary directory.
"""

from __future__ import annotations

import math
import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hotpath._background import BackgroundServer
from hotpath._demo_workload import MODEL, DemoConfig, PassResult, build_sessions, replay
from hotpath._errors import ConfigError
from hotpath._uvloop import run as run_on_uvloop
from hotpath.cost import PriceTable, Usage
from hotpath.gateway import CacheConfig, Gateway, GatewayConfig, ModelRoute, UpstreamConfig
from hotpath.gateway._cost_config import CostConfig
from hotpath.providers.mock import Latency, MockConfig, MockUpstream

__all__ = [
    "DemoConfig",
    "DemoReport",
    "GatewayCounters",
    "PassStats",
    "config_from_flags",
    "main",
    "run_demo",
]

_TIERS = (("memory", "memory"), ("sqlite", "SQLite"))
_SAMPLE = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def config_from_flags(flags: Mapping[str, object]) -> DemoConfig:
    """A :class:`DemoConfig` from ``hotpath demo`` flag values (``None``: the default);
    ``ttft_ms`` and ``think_ms`` are in milliseconds. Raises :class:`ConfigError`
    naming the flag."""
    values: dict[str, Any] = {}
    for name, value in flags.items():
        if value is None:
            continue
        flag = f"--{name.replace('_', '-')}"
        if name == "stream_share" and not (isinstance(value, float) and 0 <= value <= 1):
            raise ConfigError(f"{flag}: expected a number in [0, 1], got {value!r}")
        if name in ("ttft_ms", "think_ms"):
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"{flag}: expected a finite number >= 0, got {value!r}")
            name, value = name.removesuffix("_ms"), value / 1000
        if name not in DemoConfig.__dataclass_fields__:
            raise ConfigError(f"unknown option {flag}")
        values[name] = value
    return DemoConfig(**values)


def _percentile(data: list[float], q: float) -> float | None:
    """Nearest-rank percentile; ``None`` for no data."""
    if not data:
        return None
    ordered = sorted(data)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass(frozen=True, slots=True, kw_only=True)
class PassStats:
    """One pass, summarized. Latencies in seconds; ``upstream_calls`` is what the
    mock upstream counted; tokens are those of the calls that reached it."""

    calls: int
    errors: int
    latency: dict[float, float | None]
    ttft: dict[float, float | None]
    wall: float
    upstream_calls: int
    prompt_tokens: int
    completion_tokens: int
    hits: int
    hits_by_tier: dict[str, int]
    coalesced: int

    @classmethod
    def of(cls, result: PassResult, upstream_calls: int) -> PassStats:
        done = result.outcomes
        ok = [o for o in done if o.error is None]
        ttfts = [o.ttft for o in ok if o.ttft is not None]
        latencies = [o.latency for o in ok]
        upstream = [o for o in ok if o.went_upstream]
        tiers: dict[str, int] = {}
        for o in ok:
            if o.cache == "hit":
                tiers[o.tier or "?"] = tiers.get(o.tier or "?", 0) + 1
        return cls(
            calls=len(done),
            errors=len(done) - len(ok),
            latency={q: _percentile(latencies, q) for q in (0.5, 0.95, 0.99)},
            ttft={q: _percentile(ttfts, q) for q in (0.5, 0.95, 0.99)},
            wall=result.wall,
            upstream_calls=upstream_calls,
            prompt_tokens=sum(o.prompt_tokens for o in upstream),
            completion_tokens=sum(o.completion_tokens for o in upstream),
            hits=sum(tiers.values()),
            hits_by_tier=tiers,
            coalesced=sum(o.coalesced for o in ok),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayCounters:
    """The gateway's own count of the pass, read from its ``/metrics``."""

    hits_by_tier: dict[str, int]
    misses: int
    coalesced: int
    upstream_calls: int
    cost_usd: float = 0.0
    saved_usd: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoReport:
    config: DemoConfig
    direct: PassStats
    gateway: PassStats
    metrics: GatewayCounters
    errors: tuple[str, ...]


def _counters(text: str) -> GatewayCounters:
    hits: dict[str, int] = {}
    misses = coalesced = upstream = 0
    cost = saved = 0.0
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, labels, value = match.group(1), dict(_LABEL.findall(match.group(2))), match[3]
        count = int(float(value))
        if name == "hotpath_cache_lookups_total" and labels.get("outcome") == "hit":
            hits[labels.get("tier", "?")] = hits.get(labels.get("tier", "?"), 0) + count
        elif name == "hotpath_cache_lookups_total" and labels.get("outcome") == "miss":
            misses += count
        elif name == "hotpath_coalesced_requests_total":
            coalesced += count
        elif name == "hotpath_upstream_requests_total":
            upstream += count
        elif name == "hotpath_cost_usd_total":
            cost += float(value)
        elif name == "hotpath_saved_usd_total":
            saved += float(value)
    return GatewayCounters(
        hits_by_tier=hits,
        misses=misses,
        coalesced=coalesced,
        upstream_calls=upstream,
        cost_usd=cost,
        saved_usd=saved,
    )


async def _scrape(base: str) -> GatewayCounters:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as resp:
        return _counters(await resp.text())


def _gateway_config(cfg: DemoConfig, upstream: str, directory: str) -> GatewayConfig:
    tiers = (
        f"memory://?max_entries={cfg.memory_entries}",
        f"sqlite:///{Path(directory) / 'cache.db'}",
    )
    return GatewayConfig(
        upstreams=(UpstreamConfig(name="mock", base_url=upstream),),
        models={"*": ModelRoute(upstream="mock")},
        cache=CacheConfig(tiers=tiers),
        cost=CostConfig(store=f"sqlite:///{Path(directory) / 'usage.db'}"),
    )


def run_demo(cfg: DemoConfig | None = None, console: Console | None = None) -> DemoReport:
    """Run both passes, print the comparison on ``console`` and return the figures."""
    cfg = cfg or DemoConfig()
    console = console or Console()
    sessions = build_sessions(cfg)
    console.print(
        f"[bold]hotpath demo[/]: {cfg.calls:,} calls by {cfg.sessions} agents, "
        f"{cfg.prompts:,} prompts (Zipf s={cfg.zipf:g}), {cfg.stream_share:.0%} streamed\n"
        f"upstream: mock, {cfg.ttft * 1000:g} ms to first token, "
        f"{cfg.tokens_per_second:g} tokens/s, {cfg.completion_tokens}-token answers\n"
        f"hotpath: gateway, cache = memory ({cfg.memory_entries} entries) -> SQLite (temp file)",
        highlight=False,
    )
    mock_config = MockConfig(
        ttft=Latency.constant(cfg.ttft),
        tokens_per_second=cfg.tokens_per_second,
        completion_tokens=cfg.completion_tokens,
        seed=cfg.seed,
    )
    progress = Progress(
        TextColumn("{task.description:<20}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        refresh_per_second=5,
    )
    with (
        tempfile.TemporaryDirectory(prefix="hotpath-demo-") as tmp,
        MockUpstream(mock_config) as mock,
        progress,
    ):
        first = progress.add_task("straight to upstream", total=cfg.calls)
        second = progress.add_task("through hotpath", total=cfg.calls, start=False)
        before = mock.stats().chat_requests
        direct = run_on_uvloop(replay(mock.url, sessions, lambda _: progress.advance(first)))
        direct_upstream = mock.stats().chat_requests - before
        with BackgroundServer(Gateway(_gateway_config(cfg, mock.url, tmp))) as server:
            progress.start_task(second)
            before = mock.stats().chat_requests
            gateway = run_on_uvloop(
                replay(f"{server.base}/v1", sessions, lambda _: progress.advance(second))
            )
            gateway_upstream = mock.stats().chat_requests - before
            metrics = run_on_uvloop(_scrape(server.base))
    failed = [o for o in (*direct.outcomes, *gateway.outcomes) if o.error is not None]
    report = DemoReport(
        config=cfg,
        direct=PassStats.of(direct, direct_upstream),
        gateway=PassStats.of(gateway, gateway_upstream),
        metrics=metrics,
        errors=tuple(sorted({o.error for o in failed if o.error})),
    )
    console.print(render(report))
    _summary(console, report)
    return report


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1000
    return f"{ms:,.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def _signed(text: str) -> str:
    return text.replace("-", "\N{MINUS SIGN}")


def _change(old: float | None, new: float | None) -> str:
    """Relative change, as a ratio when the new figure is at least twice smaller."""
    if old is None or new is None or old <= 0:
        return ""
    if new > 0 and old / new >= 2:
        ratio = old / new
        return f"{ratio:,.0f}x lower" if ratio >= 10 else f"{ratio:.1f}x lower"
    return _signed(f"{(new - old) / old:+.0%}")


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%} ({part:,})" if whole else "-"


def render(report: DemoReport) -> Table:
    """The side-by-side table of a report."""
    d, g = report.direct, report.gateway
    table = Table(title="straight to the upstream vs through hotpath", title_justify="left")
    table.add_column("")
    table.add_column("direct", justify="right")
    table.add_column("through hotpath", justify="right")
    table.add_column("change", justify="right")
    for name, old, new in (("latency", d.latency, g.latency), ("TTFT (streams)", d.ttft, g.ttft)):
        for q in (0.5, 0.95, 0.99):
            label = f"{name} p{q * 100:g} (ms)"
            table.add_row(label, _ms(old[q]), _ms(new[q]), _change(old[q], new[q]))
    table.add_row("wall time (s)", f"{d.wall:.1f}", f"{g.wall:.1f}", _change(d.wall, g.wall))
    table.add_section()
    for label, a, b in (
        ("upstream calls", d.upstream_calls, g.upstream_calls),
        ("prompt tokens upstream", d.prompt_tokens, g.prompt_tokens),
        ("completion tokens upstream", d.completion_tokens, g.completion_tokens),
    ):
        saved = _signed(f"{b - a:+,} ({(b - a) / a:+.0%})") if a else ""
        table.add_row(label, f"{a:,}", f"{b:,}", saved)
    direct_cost = _direct_cost(d)
    if direct_cost is not None:
        spent = report.metrics.cost_usd
        change = _signed(f"{(spent - direct_cost) / direct_cost:+.0%}") if direct_cost else ""
        table.add_row(f"upstream spend ($, {MODEL})", f"{direct_cost:.4f}", f"{spent:.4f}", change)
        table.add_row(
            "  saved by hits + coalescing ($)", "-", f"{report.metrics.saved_usd:.4f}", ""
        )
    table.add_section()
    table.add_row("cache hit rate", "-", _share(g.hits, g.calls), "")
    for tier, label in _TIERS:
        table.add_row(f"  from {label}", "-", _share(g.hits_by_tier.get(tier, 0), g.calls), "")
    table.add_row("coalesced requests", "-", f"{g.coalesced:,}", "")
    if d.errors or g.errors:
        table.add_row("errors", f"{d.errors:,}", f"{g.errors:,}", "")
    return table


def _direct_cost(stats: PassStats) -> float | None:
    """What the direct pass's tokens cost at the shipped price of the demo's model."""
    return PriceTable.default().cost(MODEL, Usage(stats.prompt_tokens, stats.completion_tokens))


def _summary(console: Console, report: DemoReport) -> None:
    d, g = report.direct, report.gateway
    tokens = d.prompt_tokens + d.completion_tokens - g.prompt_tokens - g.completion_tokens
    saved = d.upstream_calls - g.upstream_calls
    console.print(
        f"hotpath answered {g.hits / max(1, g.calls):.0%} of the calls from its cache and "
        f"{g.coalesced} more by joining an identical call in flight: {saved:,} fewer upstream "
        f"calls, {tokens:,} fewer tokens, p50 latency {_ms(d.latency[0.5])} ms -> "
        f"{_ms(g.latency[0.5])} ms.",
        highlight=False,
    )
    for error in report.errors[:5]:
        console.print(f"[red]error:[/] {error}")


def main(cfg: DemoConfig | None = None) -> int:
    """``hotpath demo``: run it and print the elapsed time; 0 unless a call failed."""
    started = time.perf_counter()
    console = Console()
    report = run_demo(cfg, console)
    console.print(f"demo finished in {time.perf_counter() - started:.1f} s", highlight=False)
    return 1 if report.errors else 0
