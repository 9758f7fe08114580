"""Deadlines for many short calls in one event loop, with one timer for all of them.

``asyncio.timeout`` schedules and cancels a timer per call, which costs ~9 us next
to a ~40 us Redis round trip through redis-py (mostly the timer heap). A
:class:`Watchdog` instead records each guarded call's deadline in a dict and checks
them all from one periodic callback that runs only while calls are in flight. A
call that overruns is cancelled and sees :class:`TimeoutError`, as with
``asyncio.timeout`` (the same ``uncancel`` bookkeeping, so a cancellation from
outside still propagates as such); the price is precision: a call is cut off
between its deadline and one ``period`` later.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

__all__ = ["Watchdog"]


class Watchdog:
    """Holds every guarded call of one event loop to ``deadline`` seconds.

    Use ``with watchdog: ...`` (a plain ``with``, cheaper than ``async with``)
    around awaits, from tasks of that loop; guards do not nest within one task.
    """

    __slots__ = ("_current_task", "_deadline", "_fired", "_handle", "_inflight", "_loop", "_period")

    def __init__(self, loop: asyncio.AbstractEventLoop, deadline: float, period: float) -> None:
        self._loop = loop
        self._deadline = deadline
        self._period = period
        # task -> (deadline on the loop's clock, the task's cancelling() count on entry)
        self._inflight: dict[asyncio.Task[object], tuple[float, int]] = {}
        self._fired: set[asyncio.Task[object]] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._current_task = asyncio.current_task

    def __enter__(self) -> None:
        task = self._current_task(self._loop)
        if task is None:
            raise RuntimeError("a watchdog guard must be used inside a task of its loop")
        self._inflight[task] = (self._loop.time() + self._deadline, task.cancelling())
        if self._handle is None:
            self._handle = self._loop.call_later(self._period, self._check)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task = self._current_task(self._loop)
        if task is None:  # cannot happen: __enter__ ran in this same task
            return
        _, cancelling = self._inflight.pop(task)
        if self._fired and task in self._fired:
            self._fired.discard(task)
            if task.uncancel() <= cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError(f"no answer within {self._deadline:g}s") from exc

    def _check(self) -> None:
        now = self._loop.time()
        for task, (deadline, _) in self._inflight.items():
            if deadline <= now and task not in self._fired:
                self._fired.add(task)
                task.cancel()  # only schedules: the dict is not touched while we iterate
        self._handle = self._loop.call_later(self._period, self._check) if self._inflight else None
