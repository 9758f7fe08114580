"""Timing helpers shared by the benchmarks: batches, repeats, median and p99."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from hotpath.loadgen._bench import machine

__all__ = ["Figure", "host_speed", "machine", "time_async", "time_sync"]


@dataclass(frozen=True, slots=True)
class Figure:
    """Per-operation time in ns: median and p99 over batches."""

    median_ns: float
    p99_ns: float

    def ratio(self, base: Figure) -> float:
        return self.median_ns / base.median_ns

    def us(self) -> str:
        return f"{self.median_ns / 1000:.3f} / {self.p99_ns / 1000:.3f}"


def _summarize(per_op: list[float]) -> Figure:
    per_op.sort()
    return Figure(
        statistics.median(per_op), per_op[min(len(per_op) - 1, round(0.99 * (len(per_op) - 1)))]
    )


def time_sync(fn: Callable[[], object], *, batch: int = 200, batches: int = 400) -> Figure:
    """Time ``fn()`` in ``batches`` batches of ``batch`` calls each."""
    for _ in range(batch * 5):
        fn()
    per_op = []
    for _ in range(batches):
        t0 = time.perf_counter_ns()
        for _ in range(batch):
            fn()
        per_op.append((time.perf_counter_ns() - t0) / batch)
    return _summarize(per_op)


async def time_async(
    fn: Callable[[], Awaitable[object]], *, batch: int = 100, batches: int = 400
) -> Figure:
    """Time ``await fn()`` in ``batches`` batches of ``batch`` awaits each."""
    for _ in range(batch * 3):
        await fn()
    per_op = []
    for _ in range(batches):
        t0 = time.perf_counter_ns()
        for _ in range(batch):
            await fn()
        per_op.append((time.perf_counter_ns() - t0) / batch)
    return _summarize(per_op)


def host_speed() -> tuple[float, float]:
    """How fast this host runs plain Python right now: ``(ns per dict.get hit, ns
    per iteration of a summing loop)``, medians of 7 timings. These machines share
    their cores with others, and the same code runs two or three times slower on
    some days: these two numbers say which kind of day a run had."""
    d = {i: i for i in range(10_000)}
    keys = list(range(0, 10_000, 7))
    gets, loops = [], []
    for _ in range(7):
        t0 = time.perf_counter_ns()
        for _ in range(20):
            for k in keys:
                d.get(k)
        gets.append((time.perf_counter_ns() - t0) / (20 * len(keys)))
        t0 = time.perf_counter_ns()
        total = 0
        for i in range(300_000):
            total += i
        loops.append((time.perf_counter_ns() - t0) / 300_000)
    return statistics.median(gets), statistics.median(loops)
