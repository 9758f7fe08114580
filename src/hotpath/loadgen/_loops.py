"""The open and the closed loop: who sends what when, timed on an injected clock.

Both loops take the request sequence, a *send* coroutine (request -> outcome, e.g.
an :class:`~hotpath.loadgen.HttpSender`) and a callback that receives one
:class:`Shot` per completed request, and read time only through a
:class:`LoopClock`: the CLI's is ``time.perf_counter`` with ``asyncio.sleep``,
tests pass one that jumps.

- :func:`run_open_loop` sends each request at its intended time from an
  :class:`~hotpath.loadgen.OpenSchedule`, whatever happened to the earlier ones.
  A shot's latency counts from its intended time; ``sent - intended`` is the send
  lag (the loop woke late, or every in-flight slot was taken).
- :func:`run_closed_loop` runs ``concurrency`` workers, each sending its next
  request as soon as its last one is answered; intended and sent times are equal.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from hotpath.loadgen._client import Outcome
from hotpath.loadgen._schedule import OpenSchedule
from hotpath.loadgen._workload import RequestSpec

__all__ = ["LoopClock", "PerfClock", "Shot", "run_closed_loop", "run_open_loop"]

Send = Callable[[RequestSpec], Awaitable[Outcome]]
OnShot = Callable[["Shot"], None]


class LoopClock(Protocol):
    """Seconds on a monotonic clock, and a way to wait for a moment of it."""

    def now(self) -> float: ...

    async def sleep_until(self, deadline: float) -> None:
        """Return at ``deadline`` or later; yield to the event loop even if it passed."""
        ...


class PerfClock:
    """``time.perf_counter``; sleeps with ``asyncio.sleep`` for at least
    ``resolution`` seconds (default 1 ms).

    uvloop's timers count whole milliseconds: a shorter sleep returns at once,
    and an open loop at a few thousand requests per second would spin between
    arrivals, burning the CPU its sends need. Sleeping a whole millisecond instead
    sends what fell due meanwhile together, up to ``resolution`` late: each request
    is still timed from its own intended moment, and the delay shows as send lag.
    """

    __slots__ = ("resolution",)

    def __init__(self, resolution: float = 0.001) -> None:
        self.resolution = resolution

    def now(self) -> float:
        return time.perf_counter()

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - time.perf_counter()
        await asyncio.sleep(max(delay, self.resolution) if delay > 0 else 0)


@dataclass(frozen=True, slots=True)
class Shot:
    """One request and its outcome. ``intended`` is when it was due, ``sent`` when
    it went out (clock times); ``measured`` is false during the warm-up."""

    index: int
    intended: float
    sent: float
    spec: RequestSpec
    outcome: Outcome
    measured: bool = True

    @property
    def latency(self) -> float:
        """From the intended send time to the end of the answer (or failure)."""
        return self.outcome.end - self.intended

    @property
    def ttft(self) -> float | None:
        """From the intended send time to the first content chunk (streams)."""
        first = self.outcome.first_token
        return None if first is None else first - self.intended

    @property
    def lag(self) -> float:
        return self.sent - self.intended


async def run_open_loop(
    schedule: OpenSchedule,
    requests: Iterator[RequestSpec],
    send: Send,
    on_shot: OnShot,
    *,
    clock: LoopClock,
    start: float,
    max_in_flight: int,
) -> None:
    """Send the schedule's requests on time, offsets counted from clock time
    ``start``; return once every answer is in. At most ``max_in_flight`` requests
    are open: the next one due waits for a slot (and so, with it, every one due
    after it)."""
    slots = asyncio.Semaphore(max_in_flight)

    async def fire(
        index: int, intended: float, sent: float, spec: RequestSpec, measured: bool
    ) -> None:
        try:
            outcome = await send(spec)
            on_shot(Shot(index, intended, sent, spec, outcome, measured))
        finally:
            slots.release()

    async with asyncio.TaskGroup() as group:
        while (offset := schedule.next_offset()) is not None:
            await clock.sleep_until(start + offset)
            for due in schedule.due(clock.now() - start):
                spec = next(requests)
                await slots.acquire()
                sent = clock.now()
                group.create_task(fire(due.index, start + due.offset, sent, spec, due.measured))


async def run_closed_loop(
    requests: Iterator[RequestSpec],
    send: Send,
    on_shot: OnShot,
    *,
    clock: LoopClock,
    start: float,
    concurrency: int,
    warmup: float,
    duration: float | None,
    limit: int | None,
) -> None:
    """``concurrency`` workers, each sending one request at a time, until
    ``warmup + duration`` seconds after clock time ``start`` (no new request starts
    after that) or until ``limit`` measured requests have started; return once
    every answer is in."""
    end = start + warmup + (math.inf if duration is None else duration)
    counter = {"index": 0, "measured": 0}

    async def worker() -> None:
        while True:
            now = clock.now()
            if now >= end or (limit is not None and counter["measured"] >= limit):
                return
            index = counter["index"]
            measured = now - start >= warmup
            counter["index"] += 1
            counter["measured"] += measured
            spec = next(requests)
            sent = clock.now()
            outcome = await send(spec)
            on_shot(Shot(index, sent, sent, spec, outcome, measured))

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
