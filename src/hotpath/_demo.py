"""``hotpath demo``: an agent workload against a slow (simulated) LLM, with and without the cache.

Runs on the embedded default (memory + SQLite in a temporary directory): no Redis,
no API key. Prompts follow a Zipf distribution, as agents' repeated tool calls
and system prompts do; several concurrent tasks play the agents.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hotpath.cache import TieredCache, cached

__all__ = ["DemoConfig", "run_demo"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoConfig:
    calls: int = 2000
    concurrency: int = 32
    prompts: int = 2000
    zipf_s: float = 1.1
    latency: float = 0.150
    l1_entries: int = 200
    seed: int = 42


@dataclass(frozen=True, slots=True)
class Run:
    latencies: list[float]
    wall: float
    upstream_calls: int


def zipf_stream(cfg: DemoConfig) -> list[int]:
    rng = random.Random(cfg.seed)
    weights = [1.0 / (rank**cfg.zipf_s) for rank in range(1, cfg.prompts + 1)]
    return rng.choices(range(cfg.prompts), weights=weights, k=cfg.calls)


async def drive(
    stream: list[int],
    call: Callable[[int], Awaitable[object]],
    concurrency: int,
    progress: Progress,
    label: str,
) -> tuple[list[float], float]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for item in stream:
        queue.put_nowait(item)
    latencies: list[float] = []
    task_id = progress.add_task(label, total=len(stream))

    async def agent() -> None:
        while True:
            try:
                prompt = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            t0 = time.perf_counter()
            await call(prompt)
            latencies.append(time.perf_counter() - t0)
            progress.advance(task_id)

    start = time.perf_counter()
    await asyncio.gather(*(agent() for _ in range(concurrency)))
    return latencies, time.perf_counter() - start


def pct(data: list[float], q: float) -> float:
    ordered = sorted(data)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


async def run_demo(cfg: DemoConfig, console: Console | None = None) -> None:
    console = console or Console()
    stream = zipf_stream(cfg)
    upstream_calls = 0

    async def llm(prompt: int) -> dict[str, object]:
        """Stands in for a chat completion that takes ``latency`` seconds."""
        nonlocal upstream_calls
        upstream_calls += 1
        await asyncio.sleep(cfg.latency)
        return {
            "id": f"chatcmpl-{prompt}",
            "choices": [
                {"message": {"role": "assistant", "content": f"answer to prompt {prompt}"}}
            ],
            "usage": {"prompt_tokens": 42, "completion_tokens": 9},
        }

    console.print(
        f"[bold]hotpath demo[/]: {cfg.calls} agent calls over {cfg.prompts} prompts "
        f"(Zipf s={cfg.zipf_s}), {cfg.concurrency} concurrent agents, "
        f"simulated LLM latency {cfg.latency * 1000:.0f} ms; cache = memory "
        f"({cfg.l1_entries} entries) -> SQLite"
    )
    with tempfile.TemporaryDirectory(prefix="hotpath-demo-") as tmp:
        cache = TieredCache(
            [f"memory://?max_entries={cfg.l1_entries}", f"sqlite:///{Path(tmp) / 'cache.db'}"],
            default_ttl=3600,
        )

        @cached(cache)
        async def cached_llm(prompt: int) -> dict[str, object]:
            return await llm(prompt)

        with Progress(
            TextColumn("{task.description:<16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            plain_lat, plain_wall = await drive(
                stream, llm, cfg.concurrency, progress, "without cache"
            )
            plain = Run(plain_lat, plain_wall, upstream_calls)
            upstream_calls = 0
            cached_lat, cached_wall = await drive(
                stream, cached_llm, cfg.concurrency, progress, "with hotpath"
            )
            with_cache = Run(cached_lat, cached_wall, upstream_calls)
        stats = cache.stats()
        await cache.aclose()

    table = Table(title="hotpath demo results")
    table.add_column("")
    table.add_column("without cache", justify="right")
    table.add_column("with hotpath", justify="right")
    table.add_row("calls", str(cfg.calls), str(cfg.calls))
    table.add_row("upstream (LLM) calls", str(plain.upstream_calls), str(with_cache.upstream_calls))
    saved = plain.upstream_calls - with_cache.upstream_calls
    table.add_row("upstream calls saved", "-", f"{saved} ({saved / cfg.calls:.0%})")
    lookups = stats.hits + stats.misses
    for tier in stats.tiers:
        table.add_row(
            f"hits in {tier.name}",
            "-",
            f"{tier.hits} ({tier.hits / max(1, lookups):.0%} of lookups)",
        )
    table.add_row("calls sharing an in-flight load", "-", str(stats.coalesced))
    for label, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        table.add_row(
            f"latency {label} (ms)",
            f"{pct(plain.latencies, q):.1f}",
            f"{pct(with_cache.latencies, q):.3f}",
        )
    table.add_row(
        "latency mean (ms)",
        f"{statistics.fmean(plain.latencies) * 1000:.1f}",
        f"{statistics.fmean(with_cache.latencies) * 1000:.2f}",
    )
    table.add_row("wall time (s)", f"{plain.wall:.2f}", f"{with_cache.wall:.2f}")
    console.print(table)
    console.print(
        f"hotpath answered {stats.hits} of {cfg.calls} calls from cache and made the run "
        f"{plain.wall / with_cache.wall:.1f}x faster."
    )


def main(cfg: DemoConfig | None = None) -> None:
    asyncio.run(run_demo(cfg or DemoConfig()))
