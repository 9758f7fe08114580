"""Deadlines for many short calls in one event loop, with one timer for all of them.

``asyncio.timeout`` schedules and cancels a timer per call; on a Redis hit (~40 us
of redis-py work) that costs ~9 us, mostly the timer heap. A :class:`Watchdog`
instead records each guarded call's deadline in a dict and checks them all from a
single periodic callback that runs only while calls are in flight. A call that
overruns is cancelled and sees :class:`TimeoutError`, exactly as with
``asyncio.timeout`` (same ``uncancel`` bookkeeping, so a cancellation from outside
still propagates); the price is precision: a call is cut off between its deadline
and one ``period`` later.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

__all__ = ["Watchdog"]


class Watchdog:
    """Cuts off guarded calls of one event loop that outlive their deadline.

    Use ``async with watchdog.guard(seconds): ...`` from a task of that loop. Guards
    do not nest within one task.
    """

    __slots__ = ("_fired", "_handle", "_inflight", "_loop", "_period")

    def __init__(self, loop: asyncio.AbstractEventLoop, period: float) -> None:
        self._loop = loop
        self._period = period
        self._inflight: dict[asyncio.Task[object], float] = {}
        self._fired: set[asyncio.Task[object]] = set()
        self._handle: asyncio.TimerHandle | None = None

    def guard(self, seconds: float) -> _Guard:
        return _Guard(self, seconds)

    def _check(self) -> None:
        now = self._loop.time()
        for task, deadline in self._inflight.items():
            if deadline <= now and task not in self._fired:
                self._fired.add(task)
                task.cancel()  # only schedules: the dict is not touched while we iterate
        self._handle = self._loop.call_later(self._period, self._check) if self._inflight else None


class _Guard:
    __slots__ = ("_cancelling", "_dog", "_seconds", "_task")

    def __init__(self, dog: Watchdog, seconds: float) -> None:
        self._dog = dog
        self._seconds = seconds

    async def __aenter__(self) -> None:
        dog = self._dog
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a watchdog guard must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        dog._inflight[task] = dog._loop.time() + self._seconds
        if dog._handle is None:
            dog._handle = dog._loop.call_later(dog._period, dog._check)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        dog, task = self._dog, self._task
        del dog._inflight[task]
        if dog._fired and task in dog._fired:
            dog._fired.discard(task)
            if task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc
