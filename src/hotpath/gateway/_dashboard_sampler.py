"""The dashboard's sampler: the gateway's metrics read on a timer into a ring of
points, which event streams follow.

One process reads its own registry (only the families the dashboard draws); with
several workers (``PROMETHEUS_MULTIPROC_DIR``) every worker reads the files all
of them write, as ``/metrics`` does, in a thread since that is file I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

import orjson
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from hotpath._errors import ConfigError
from hotpath.gateway._dashboard_series import DashboardPoint, Snapshot, point_between, snapshot
from hotpath.gateway._state import State

__all__ = ["Sampler", "SamplerStats"]

log = logging.getLogger("hotpath.gateway")

#: The metrics (GatewayMetrics attributes) the dashboard draws. Collecting only
#: these costs a third less than the whole registry (measured: 270 against 410 us).
_SHOWN = (
    "requests",
    "latency",
    "ttft",
    "cache",
    "upstream",
    "rate_limited",
    "shed",
    "breaker_rejections",
    "budget_refused",
    "tokens",
    "cost",
    "saved",
    "in_flight",
    "breaker_state",
    "concurrency_limit",
)


@dataclass(frozen=True, slots=True)
class SamplerStats:
    """How the sampler is doing: ``samples`` taken, their ``mean_cost`` and
    ``max_cost`` in seconds of CPU (reading the metrics and reducing them; a
    garbage collection that happens to run during a reading counts too), the
    ``median_cost`` of the last 60, ``failures``, and the event ``streams`` open
    on this process."""

    samples: int
    mean_cost: float
    max_cost: float
    median_cost: float
    failures: int
    streams: int


class Entry(NamedTuple):
    """A point and its JSON, encoded once for every stream."""

    point: DashboardPoint
    data: bytes


def _check_seconds(value: object, name: str) -> float:
    if not (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    ):
        raise ConfigError(f"dashboard {name} must be a number > 0 seconds, got {value!r}")
    return float(value)


class Sampler:
    """Reads ``state``'s metrics every ``interval`` seconds (``idle_interval``
    while no stream is open) and keeps the last ``history`` points."""

    def __init__(
        self,
        state: State,
        *,
        interval: float = 1.0,
        history: int = 300,
        idle_interval: float | None = None,
    ) -> None:
        self.interval = _check_seconds(interval, "interval")
        if not (isinstance(history, int) and not isinstance(history, bool) and history >= 2):
            raise ConfigError(f"dashboard history must be an int >= 2, got {history!r}")
        self.history = history
        self.multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        if idle_interval is None:
            # Every worker reads every worker's file: W workers cost W*W file
            # reads a second, so with no dashboard open they read ten times less.
            idle_interval = self.interval * 10 if self.multiproc_dir else self.interval
        self.idle_interval = max(_check_seconds(idle_interval, "idle_interval"), self.interval)
        self.run = os.urandom(4).hex()  # tells a reconnecting stream whether its ids hold
        self.seq = 0
        self.streams = 0  # open event streams, counted by their handler
        self.ring: deque[Entry] = deque(maxlen=history)
        self._state = state
        self._clock = state.clock
        self._collector: MultiProcessCollector | None = None
        self._prev: Snapshot | None = None
        self._prev_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick: asyncio.Future[None] | None = None
        self._woken: asyncio.Event | None = None
        self.closed = False
        self._samples = 0
        self._failures = 0
        self._cost_total = 0.0
        self._cost_max = 0.0
        self._costs: deque[float] = deque(maxlen=60)

    async def start(self) -> None:
        """Take the first reading and begin sampling (idempotent)."""
        if self._task is not None:
            return
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self._woken = asyncio.Event()
        if self.multiproc_dir is not None:
            self._collector = MultiProcessCollector(None, path=self.multiproc_dir)  # type: ignore[no-untyped-call]
        try:
            self._prev = await self._read_async(count=False)  # warm-up: not counted
        except Exception:  # e.g. a worker's metrics file half made: the next reading
            self._failures += 1
            log.exception("dashboard: the first reading of the metrics failed")
        self._prev_at = self._clock.monotonic()
        self._task = self._loop.create_task(self._run(), name="hotpath-dashboard")

    def end_streams(self) -> None:
        """Wake the open event streams, which then end (sampling goes on until
        :meth:`aclose`)."""
        self.closed = True
        self._notify()

    async def aclose(self) -> None:
        """Stop sampling and wake the streams, which then end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.end_streams()

    def stats(self) -> SamplerStats:
        n = self._samples
        recent = sorted(self._costs)
        return SamplerStats(
            samples=n,
            mean_cost=self._cost_total / n if n else 0.0,
            max_cost=self._cost_max,
            median_cost=recent[len(recent) // 2] if recent else 0.0,
            failures=self._failures,
            streams=self.streams,
        )

    def families(self) -> list[Metric]:
        """The metric families read: every worker's (multiprocess), else the
        ones the dashboard draws from this gateway's registry."""
        collector = self._collector
        if collector is not None:
            return list(collector.collect())  # type: ignore[no-untyped-call]
        metrics = self._state.metrics
        shown = [getattr(metrics, name, None) for name in _SHOWN]
        return [family for metric in shown if metric is not None for family in metric.collect()]

    def _read(self) -> tuple[Snapshot, float]:
        # CPU time of this thread: what a reading costs, whatever else runs.
        started = time.thread_time()
        snap = snapshot(self.families())
        return snap, time.thread_time() - started

    async def _read_async(self, *, count: bool = True) -> Snapshot:
        if self._collector is not None:
            # Reading every worker's files is I/O: off the event loop.
            snap, cost = await asyncio.get_running_loop().run_in_executor(None, self._read)
        else:
            snap, cost = self._read()
        if count:
            self._count(cost)
        return snap

    def _count(self, cost: float) -> None:
        self._samples += 1
        self._cost_total += cost
        self._cost_max = max(self._cost_max, cost)
        self._costs.append(cost)

    def sample(self) -> DashboardPoint | None:
        """Read the metrics now and append the point since the last reading (the
        first reading only sets the baseline and gives ``None``)."""
        snap, cost = self._read()
        self._count(cost)
        return self._advance(snap)

    def _advance(self, snap: Snapshot) -> DashboardPoint | None:
        now = self._clock.monotonic()
        prev, dt = self._prev, now - self._prev_at
        self._prev, self._prev_at = snap, now
        point = None
        if prev is not None and dt > 0:
            self.seq += 1
            point = point_between(prev, snap, seq=self.seq, t=self._clock.now(), dt=dt)
            self.ring.append(Entry(point, orjson.dumps(point)))
        # Streams wake on every reading, a point or not, to check their session.
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._notify)
        return point

    def _notify(self) -> None:
        tick, self._tick = self._tick, None
        if tick is not None and not tick.done():
            tick.set_result(None)

    def next_tick(self) -> asyncio.Future[None]:
        """A future done at the next reading (or when the sampler closes)."""
        if self._tick is None:
            self._tick = asyncio.get_running_loop().create_future()
        return self._tick

    def watched(self) -> None:
        """A stream opened: read at ``interval`` from now on."""
        if self._woken is not None:
            self._woken.set()

    async def _run(self) -> None:
        # Paced by the event loop's clock; the points' times come from the
        # gateway's clock (injectable).
        loop = asyncio.get_running_loop()
        woken = self._woken or asyncio.Event()
        last = loop.time()
        while True:
            period = self.interval if self.streams else self.idle_interval
            wait = last + period - loop.time()
            if wait > 0:
                # A stream opening wakes the loop: its period may be shorter.
                woken.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), wait)
                continue
            # After a stall, carry on from now rather than catching up in a burst.
            last = loop.time()
            try:
                self._advance(await self._read_async())
            except Exception:  # a bad reading must not end sampling
                self._failures += 1
                if self._failures == 1:
                    log.exception("dashboard: reading the metrics failed (logged once)")

    # -- what streams send -----------------------------------------------------------

    def resume_from(self, mark: bytes | None) -> int | None:
        """The last point a client has, from ``<run>-<seq>``, if the ring still
        holds what follows it (this run of the sampler, not fallen off the ring)."""
        if not mark:
            return None
        run, _, seq = mark.decode("latin-1").partition("-")
        if run != self.run or not seq.isdigit():
            return None
        last = int(seq)
        oldest = self.ring[0].point.seq if self.ring else self.seq + 1
        return last if oldest - 1 <= last <= self.seq else None

    def since(self, last: int) -> tuple[bytes, int, int]:
        """The events of the points after ``last``, the last one's number, and
        how many there are."""
        run = self.run.encode()
        entries = [e for e in tuple(self.ring) if e.point.seq > last]
        body = b"".join(b"id: %s-%d\ndata: %s\n\n" % (run, e.point.seq, e.data) for e in entries)
        return body, entries[-1].point.seq if entries else last, len(entries)

    def history_json(self, meta: bytes) -> bytes:
        """The points held and ``meta`` (JSON), as one JSON document."""
        points = b",".join(e.data for e in tuple(self.ring))
        return b'{"meta":' + meta + b',"points":[' + points + b"]}"

    def points(self) -> list[DashboardPoint]:
        """The points held, oldest first."""
        return [entry.point for entry in tuple(self.ring)]
