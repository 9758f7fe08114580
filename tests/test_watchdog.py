"""The shared-timer deadline the Redis tier puts around each call."""

from __future__ import annotations

import asyncio

import pytest

from hotpath.cache._watchdog import Watchdog


async def test_a_call_that_overruns_gets_timeout_error() -> None:
    dog = Watchdog(asyncio.get_running_loop(), deadline=0.02, period=0.01)
    never = asyncio.Event()
    with pytest.raises(TimeoutError), dog:
        await asyncio.wait_for(never.wait(), 5)  # the outer bound only guards the test
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0  # the watchdog's cancel was taken back
    await asyncio.sleep(0)  # and no cancellation is left pending for the next await


async def test_a_call_that_finishes_in_time_is_untouched() -> None:
    dog = Watchdog(asyncio.get_running_loop(), deadline=5.0, period=0.01)
    for _ in range(3):
        with dog:
            await asyncio.sleep(0)
    assert dog._inflight == {}
    assert dog._fired == set()


async def test_cancellation_from_outside_still_propagates() -> None:
    dog = Watchdog(asyncio.get_running_loop(), deadline=5.0, period=0.01)
    entered = asyncio.Event()

    async def guarded() -> None:
        with dog:
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(guarded())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert dog._inflight == {}


async def test_many_concurrent_calls_are_each_held_to_the_deadline() -> None:
    dog = Watchdog(asyncio.get_running_loop(), deadline=0.02, period=0.01)

    async def slow() -> str:
        try:
            with dog:
                await asyncio.Event().wait()
        except TimeoutError:
            return "timed out"
        return "finished"

    async def fast() -> str:
        with dog:
            await asyncio.sleep(0)
        return "finished"

    results = await asyncio.wait_for(
        asyncio.gather(*(slow() if i % 2 else fast() for i in range(20))), 5
    )
    assert results == ["finished", "timed out"] * 10
    assert dog._inflight == {}


async def test_outside_a_task_it_refuses() -> None:
    loop = asyncio.get_running_loop()
    dog = Watchdog(loop, deadline=1.0, period=0.1)
    fut: asyncio.Future[None] = loop.create_future()

    def in_a_callback() -> None:
        try:
            with dog:
                pass
        except RuntimeError as exc:
            fut.set_result(None) if "inside a task" in str(exc) else fut.set_exception(exc)

    loop.call_soon(in_a_callback)
    await asyncio.wait_for(fut, 5)
