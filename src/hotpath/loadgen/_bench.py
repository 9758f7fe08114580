"""One load run against each of several targets: :func:`measure` and :func:`run_bench`.

Targets are measured one after the other, never at the same time, so they do not
share the generator's CPU; each gets the same request sequence from the start
(the workload is rebuilt from its config) and a fresh connection pool.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from hotpath._uvloop import run as run_on_uvloop
from hotpath.loadgen._client import HttpSender
from hotpath.loadgen._config import LoadConfig, WorkloadConfig
from hotpath.loadgen._histogram import require_hdrhistogram
from hotpath.loadgen._loops import LoopClock, PerfClock, run_closed_loop, run_open_loop
from hotpath.loadgen._recorder import Recorder
from hotpath.loadgen._results import TargetResult
from hotpath.loadgen._schedule import OpenSchedule, arrival_offsets
from hotpath.loadgen._workload import make_workload

__all__ = ["BenchReport", "Target", "machine", "measure", "run_bench"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """An OpenAI-compatible base URL (``http://host:port/v1``) and what to send it
    besides the body: ``api_key`` as ``Authorization: Bearer``, extra ``headers``."""

    name: str
    url: str
    api_key: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchReport:
    """Every target's result under one load and workload; ``notes`` are lines for
    the report (which servers were started, what was skipped)."""

    load: LoadConfig
    workload: WorkloadConfig
    results: tuple[TargetResult, ...]
    started: str
    machine: str
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "machine": self.machine,
            "load": asdict(self.load) | {"mode": self.load.mode},
            "workload": asdict(self.workload) | {"pool": self.workload.pool},
            "notes": list(self.notes),
            "results": [r.to_dict() for r in self.results],
        }


def machine() -> str:
    """``AMD EPYC, 2 cores, Python 3.11.7, Linux x86_64``."""
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.partition(":")[2].strip()
                    break
    except OSError:
        pass
    try:
        cores: int | None = len(os.sched_getaffinity(0))  # what nproc says
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count()
    return (
        f"{cpu}, {cores} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}"
    )


async def measure(
    target: Target,
    load: LoadConfig,
    workload: WorkloadConfig,
    *,
    clock: LoopClock | None = None,
) -> TargetResult:
    """Run ``load`` with ``workload`` against ``target`` and summarize it."""
    require_hdrhistogram()
    clock = clock or PerfClock()
    requests = make_workload(workload)  # built before the clock starts (long-context)
    open_loop = load.rate is not None
    async with HttpSender(
        target.url,
        clock=clock.now,
        connections=load.max_in_flight if open_loop else load.concurrency,
        timeout=load.timeout,
        api_key=target.api_key,
        headers=target.headers,
    ) as send:
        start = clock.now()
        recorder = Recorder(start, load.warmup)
        if load.rate is not None:
            schedule = OpenSchedule(
                arrival_offsets(load.rate, load.arrivals, load.seed),
                warmup=load.warmup,
                duration=load.duration,
                limit=load.requests,
            )
            await run_open_loop(
                schedule,
                requests,
                send,
                recorder,
                clock=clock,
                start=start,
                max_in_flight=load.max_in_flight,
            )
        else:
            await run_closed_loop(
                requests,
                send,
                recorder,
                clock=clock,
                start=start,
                concurrency=load.concurrency,
                warmup=load.warmup,
                duration=load.duration,
                limit=load.requests,
            )
    return recorder.result(
        name=target.name,
        url=target.url,
        load=load.describe(),
        workload=workload.describe(),
        open_loop=open_loop,
    )


def run_bench(
    targets: Sequence[Target],
    load: LoadConfig,
    workload: WorkloadConfig,
    *,
    notes: Sequence[str] = (),
    on_progress: Callable[[str], None] | None = None,
) -> BenchReport:
    """Measure each target in turn, each on a fresh uvloop event loop."""
    if not targets:
        raise ValueError("run_bench: no targets")
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    results = []
    for target in targets:
        if on_progress is not None:
            on_progress(f"{target.name} ({target.url}): {load.describe()}")
        result = run_on_uvloop(measure(target, load, workload))
        if on_progress is not None:
            errors = sum(result.errors.values())
            lat = result.latency
            timing = f", p50 {lat.p50 * 1000:.1f} ms, p99 {lat.p99 * 1000:.1f} ms" if lat else ""
            on_progress(
                f"{target.name}: {result.ok:,} ok, {errors:,} errors, "
                f"{result.throughput:,.0f} req/s{timing}"
            )
        results.append(result)
    return BenchReport(
        load=load,
        workload=workload,
        results=tuple(results),
        started=started,
        machine=machine(),
        notes=tuple(notes),
    )
