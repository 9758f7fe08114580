"""Single-flight: identical requests in flight share one upstream call.

The first request of a key starts a :class:`Flight`, whose upstream call runs in a
task of its own, so the call goes on if that first client leaves. Every request
of the key (the first included) is a *waiter*: it reads the flight's chunks from
the start and then live, as they arrive, or waits for its whole body. When the
last waiter leaves before the answer is complete, the call is cancelled and
nothing partial is kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from hotpath.gateway._answers import Answer

__all__ = ["Flight", "FlightFailedError", "Flights"]


class FlightFailedError(Exception):
    """The shared call failed; ``error`` is what every waiter answers with."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class Flight:
    """One upstream call and what it has produced so far."""

    __slots__ = (
        "_changed",
        "answer",
        "chunks",
        "done",
        "error",
        "key",
        "meta",
        "stream",
        "task",
        "usage_index",
        "waiters",
    )

    def __init__(self, key: str | None, stream: bool) -> None:
        self.key = key
        self.stream = stream
        self.chunks: list[bytes] = []
        self.usage_index = -1
        self.answer: Answer | None = None
        self.error: BaseException | None = None
        self.done = False
        self.waiters = 0
        # Response headers the leader learned (the deployment that answered ...).
        self.meta: list[tuple[bytes, bytes]] = []
        self.task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- the leader's side ------------------------------------------------------

    def push(self, payload: bytes, *, usage: bool = False) -> None:
        """A streamed chunk arrived."""
        if usage:
            self.usage_index = len(self.chunks)
        self.chunks.append(payload)
        self._wake()

    def finish(self, answer: Answer) -> None:
        """The call completed with ``answer``."""
        self.answer = answer
        self.done = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        """The call failed (or was cut): waiters answer with ``error``."""
        if self.done:
            return
        self.error = error
        self.done = True
        self._wake()

    # -- a waiter's side --------------------------------------------------------

    async def payloads(self) -> AsyncIterator[tuple[bytes, bool]]:
        """``(chunk, is_usage_chunk)`` from the first chunk on, live; raises
        :class:`FlightFailedError` if the call fails (after the chunks that came)."""
        i = 0
        while True:
            while i < len(self.chunks):
                yield self.chunks[i], i == self.usage_index
                i += 1
            if self.done:
                if self.error is not None:
                    raise FlightFailedError(self.error)
                return
            await self._changed.wait()

    async def result(self) -> Answer:
        """The whole answer once the call completes."""
        while not self.done:
            await self._changed.wait()
        if self.error is not None:
            raise FlightFailedError(self.error)
        assert self.answer is not None
        return self.answer


class Flights:
    """The flights of one event loop, by cache key."""

    def __init__(self) -> None:
        self._active: dict[str, Flight] = {}
        self.started = 0
        self.joined = 0
        self.cancelled = 0

    def __len__(self) -> int:
        return len(self._active)

    def join(self, key: str) -> Flight | None:
        """The flight of ``key`` if one is running; the caller is now its waiter."""
        flight = self._active.get(key)
        if flight is not None:
            flight.waiters += 1
            self.joined += 1
        return flight

    def start(
        self,
        key: str | None,
        stream: bool,
        run: Callable[[Flight], Awaitable[None]],
        *,
        shared: bool = True,
    ) -> Flight:
        """Start a flight (running ``run(flight)`` in its own task); the caller is its
        first waiter. Only a ``shared`` flight with a key can be joined."""
        flight = Flight(key, stream)
        flight.waiters = 1
        if shared and key is not None:
            self._active[key] = flight
        self.started += 1
        task = asyncio.get_running_loop().create_task(self._run(flight, run))
        flight.task = task
        return flight

    async def _run(self, flight: Flight, run: Callable[[Flight], Awaitable[None]]) -> None:
        try:
            await run(flight)
        except asyncio.CancelledError:
            flight.fail(asyncio.CancelledError("every client left"))
            raise
        except Exception as exc:  # noqa: BLE001 - every waiter answers with it
            flight.fail(exc)
        finally:
            self._forget(flight)
            if not flight.done:
                flight.fail(RuntimeError("the upstream call ended without an answer"))

    def leave(self, flight: Flight) -> None:
        """A waiter is gone. The last one leaving an unfinished flight cancels it."""
        flight.waiters -= 1
        if flight.waiters <= 0 and not flight.done and flight.task is not None:
            self.cancelled += 1
            self._forget(flight)
            flight.task.cancel()

    def _forget(self, flight: Flight) -> None:
        if flight.key is not None and self._active.get(flight.key) is flight:
            del self._active[flight.key]

    async def aclose(self) -> None:
        tasks = [f.task for f in self._active.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._active.clear()
