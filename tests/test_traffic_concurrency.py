"""The concurrency limiter: its sync core driven by a ManualClock, and the asyncio
wrapper through the public API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from hotpath._clock import ManualClock
from hotpath._errors import ConfigError, OverloadedError
from hotpath.traffic._concurrency import (
    DEFAULT_PRIORITIES,
    ConcurrencyLimiter,
    ConcurrencyStats,
    Permit,
)
from hotpath.traffic._limit_algorithms import FixedLimit


class Recorder:
    """A limit algorithm that records its samples; the test sets the limit."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self.samples: list[tuple[float, float, int, bool]] = []

    @property
    def limit(self) -> int:
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        self._limit = value

    def update(self, *, now: float, rtt: float, inflight: int, dropped: bool) -> int:
        self.samples.append((now, rtt, inflight, dropped))
        return self._limit


class Waiters:
    """Callbacks for :meth:`ConcurrencyLimiter.enqueue` that record what happened."""

    def __init__(self) -> None:
        self.granted: list[tuple[str, Permit]] = []
        self.shed: list[tuple[str, OverloadedError]] = []

    def grant(self, tag: str) -> Callable[[Permit], bool]:
        def on_grant(permit: Permit) -> bool:
            self.granted.append((tag, permit))
            return True

        return on_grant

    def on_shed(self, tag: str) -> Callable[[OverloadedError], None]:
        return lambda error: self.shed.append((tag, error))

    def enqueue(
        self, limiter: ConcurrencyLimiter, priority: str, tag: str, timeout: float | None = None
    ) -> None:
        limiter.enqueue(
            priority, timeout=timeout, on_grant=self.grant(tag), on_shed=self.on_shed(tag)
        )


def make(limit: int = 2, **kwargs: object) -> tuple[ConcurrencyLimiter, Recorder, ManualClock]:
    clock = ManualClock()
    alg = Recorder(limit)
    return ConcurrencyLimiter(alg, clock=clock, **kwargs), alg, clock  # type: ignore[arg-type]


# -- the sync core ------------------------------------------------------------------------


def test_try_acquire_grants_up_to_the_limit() -> None:
    limiter, _, _ = make(2)
    first, second = limiter.try_acquire(), limiter.try_acquire("interactive")
    assert first is not None
    assert second is not None
    assert limiter.try_acquire("batch") is None
    assert limiter.inflight == 2
    first.ignore()
    assert limiter.inflight == 1
    assert limiter.try_acquire() is not None


def test_success_feeds_the_measured_rtt_and_the_inflight_at_grant() -> None:
    limiter, alg, clock = make(2)
    a = limiter.try_acquire()
    b = limiter.try_acquire()
    assert a is not None
    assert b is not None
    clock.advance(0.25)
    a.success()
    b.success(rtt=0.1)  # e.g. time to first token
    assert alg.samples == [(0.25, 0.25, 1, False), (0.25, 0.1, 2, False)]


def test_dropped_and_ignore() -> None:
    limiter, alg, clock = make(2)
    a = limiter.try_acquire()
    b = limiter.try_acquire()
    assert a is not None
    assert b is not None
    clock.advance(1.0)
    a.dropped()
    b.ignore()
    assert alg.samples == [(1.0, 1.0, 1, True)]
    assert limiter.stats().dropped == 1
    assert limiter.inflight == 0


def test_only_the_first_end_of_a_permit_counts() -> None:
    limiter, alg, _ = make(2)
    permit = limiter.try_acquire()
    assert permit is not None
    permit.success(rtt=0.5)
    permit.dropped()
    permit.ignore()
    permit.success()
    assert alg.samples == [(0.0, 0.5, 1, False)]
    assert limiter.inflight == 0
    assert permit.done


def test_a_bad_rtt_is_rejected_and_the_permit_stays_held() -> None:
    limiter, _, _ = make(1)
    permit = limiter.try_acquire()
    assert permit is not None
    with pytest.raises(ConfigError, match=r"rtt must be a number >= 0, got -1.0"):
        permit.success(rtt=-1.0)
    assert limiter.inflight == 1


def test_a_waiter_is_granted_when_a_slot_frees() -> None:
    limiter, _, _ = make(1)
    held = limiter.try_acquire()
    assert held is not None
    w = Waiters()
    w.enqueue(limiter, "standard", "a")
    assert limiter.queued == 1
    assert w.granted == []
    held.success()
    assert [tag for tag, _ in w.granted] == ["a"]
    assert limiter.queued == 0
    assert limiter.inflight == 1


def test_arrivals_queue_behind_waiters_even_with_a_free_slot() -> None:
    limiter, alg, _ = make(1)
    held = limiter.try_acquire()
    assert held is not None
    w = Waiters()
    w.enqueue(limiter, "batch", "a")
    alg.limit = 5  # a slot is free, but somebody is queued: no jumping the queue
    assert limiter.try_acquire("interactive") is None


def test_fifo_within_a_class() -> None:
    limiter, _, _ = make(1)
    held = limiter.try_acquire()
    assert held is not None
    w = Waiters()
    for tag in "abcd":
        w.enqueue(limiter, "standard", tag)
    for _ in range(4):
        held = w.granted[-1][1] if w.granted else held
        held.success()
    assert [tag for tag, _ in w.granted] == list("abcd")


def serve(w: Waiters, held: Permit, grants: int) -> tuple[list[str], Permit]:
    """Release ``held``, then ``grants - 1`` times the permit granted last: the tags
    granted, in order, and the permit now held."""
    start = len(w.granted)
    for _ in range(grants):
        held.success()
        held = w.granted[-1][1]
    return [tag for tag, _ in w.granted[start:]], held


def test_grants_under_a_full_backlog_follow_the_weights_25_10_3() -> None:
    limiter, _, _ = make(1, max_queue=10_000)
    held = limiter.try_acquire()
    assert held is not None
    w = Waiters()
    for i in range(400):
        for priority in DEFAULT_PRIORITIES:
            w.enqueue(limiter, priority, f"{priority}-{i}")
    order, _ = serve(w, held, 380)
    classes = [tag.split("-")[0] for tag in order]
    # stride scheduling: exactly 25 : 10 : 3 in every 38 grants, not only on average
    for start in range(0, 380, 38):
        window = classes[start : start + 38]
        counts = [window.count(p) for p in DEFAULT_PRIORITIES]
        assert counts == [25, 10, 3]
    for priority in DEFAULT_PRIORITIES:  # first in first out within a class
        mine = [int(tag.split("-")[1]) for tag in order if tag.startswith(priority)]
        assert mine == list(range(len(mine)))


def test_a_tie_between_passes_goes_to_the_heavier_class() -> None:
    limiter, _, _ = make(1)
    held = limiter.try_acquire()
    assert held is not None
    w = Waiters()
    for priority in ("batch", "standard", "interactive"):  # all start at the same pass
        w.enqueue(limiter, priority, priority)
    assert serve(w, held, 3)[0] == ["interactive", "standard", "batch"]


def test_a_class_asking_less_than_its_share_is_served_at_the_next_free_slot() -> None:
    limiter, _, _ = make(1, max_queue=10_000)
    held = limiter.try_acquire()
    assert held is not None
    w = Waiters()
    for i in range(200):
        w.enqueue(limiter, "standard", f"s{i}")
        w.enqueue(limiter, "batch", f"b{i}")
    _, held = serve(w, held, 50)
    # interactive asks for 1 slot in 4, less than its 25/38 share: each call goes at the
    # next free slot, ahead of the backlogs queued long before it
    for i in range(20):
        w.enqueue(limiter, "interactive", f"i{i}")
        order, held = serve(w, held, 1)
        assert order == [f"i{i}"]
        order, held = serve(w, held, 3)
        assert not any(tag.startswith("i") for tag in order)


def test_interactive_below_its_share_waits_one_slot_at_most_despite_a_batch_backlog() -> None:
    limiter, _, clock = make(1, max_queue=10_000)
    first = limiter.try_acquire()
    assert first is not None
    held = [first]
    waits: dict[str, list[float]] = {"interactive": [], "batch": []}

    def enqueue(priority: str, timeout: float | None) -> None:
        since = clock.monotonic()

        def on_grant(permit: Permit) -> bool:
            waits[priority].append(clock.monotonic() - since)
            held.append(permit)
            return True

        limiter.enqueue(priority, timeout=timeout, on_grant=on_grant, on_shed=lambda e: None)

    # a slot frees every 0.1 s; batch offers 2 calls a slot (1 s budget), interactive 0.5
    for step in range(1, 201):
        clock.advance(0.1)
        limiter.expire()
        enqueue("batch", 1.0)
        enqueue("batch", 1.0)
        if step % 2:
            enqueue("interactive", None)
        held[-1].success()
    assert len(waits["interactive"]) == 100  # all it asked for
    assert max(waits["interactive"]) <= 0.1 + 1e-9  # the next free slot
    assert len(waits["batch"]) >= 99  # the rest of the capacity: work conserving


def test_an_idle_class_earns_no_burst_credit() -> None:
    limiter, _, _ = make(1, max_queue=10_000)
    held = limiter.try_acquire()
    assert held is not None
    w = Waiters()
    for i in range(200):
        w.enqueue(limiter, "batch", f"b{i}")
    _, held = serve(w, held, 100)  # batch alone: its pass is far ahead of standard's
    for i in range(100):
        w.enqueue(limiter, "standard", f"s{i}")
    order, _ = serve(w, held, 26)
    # standard starts at the current virtual time, not at the pass it had when idle:
    # shares 10 : 3 (20 : 6, give or take the phase) at once, instead of 26 standard
    # grants in a row (and 330 in all) to make up for the time it was idle
    assert sum(tag.startswith("s") for tag in order) in (20, 21)
    assert sum(tag.startswith("b") for tag in order) in (5, 6)


def test_a_full_queue_sheds_the_arrival() -> None:
    limiter, _, _ = make(1, max_queue=2)
    assert limiter.try_acquire() is not None
    w = Waiters()
    for tag in ("a", "b", "c"):
        w.enqueue(limiter, "batch", tag)
    assert [tag for tag, _ in w.shed] == ["c"]
    error = w.shed[0][1]
    assert error.priority == "batch"
    assert "queue is full" in str(error)
    assert limiter.stats().shed == {"queue_full": 1, "deadline": 0}


def test_a_heavier_arrival_evicts_the_newest_waiter_of_the_lightest_class() -> None:
    limiter, _, _ = make(1, max_queue=3)
    held = limiter.try_acquire()
    assert held is not None
    w = Waiters()
    w.enqueue(limiter, "batch", "batch-old")
    w.enqueue(limiter, "batch", "batch-new")
    w.enqueue(limiter, "standard", "standard")
    w.enqueue(limiter, "interactive", "interactive")
    assert [tag for tag, _ in w.shed] == ["batch-new"]
    assert w.shed[0][1].priority == "batch"
    assert limiter.stats().queued == {"interactive": 1, "standard": 1, "batch": 1}
    w.enqueue(limiter, "standard", "standard-2")  # evicts the last batch waiter
    w.enqueue(limiter, "standard", "standard-3")  # no lighter class left: shed itself
    assert [tag for tag, _ in w.shed] == ["batch-new", "batch-old", "standard-3"]


@pytest.mark.parametrize("priority", ["batch", "standard", "interactive"])
def test_max_queue_0_sheds_any_arrival_at_the_limit_as_queue_full(priority: str) -> None:
    limiter, _, _ = make(1, max_queue=0)
    assert limiter.try_acquire("batch") is not None
    w = Waiters()
    w.enqueue(limiter, priority, "x")
    assert [tag for tag, _ in w.shed] == ["x"]
    assert "queue is full" in str(w.shed[0][1])
    assert limiter.stats().shed == {"queue_full": 1, "deadline": 0}
    assert limiter.queued == 0


def test_eviction_skips_cancelled_waiters_at_the_tail_of_the_lightest_class() -> None:
    limiter, _, _ = make(1, max_queue=3)
    assert limiter.try_acquire() is not None
    w = Waiters()
    w.enqueue(limiter, "batch", "b1")
    for tag in ("b2", "b3"):
        ticket = limiter.enqueue(
            "batch", timeout=None, on_grant=w.grant(tag), on_shed=w.on_shed(tag)
        )
        assert limiter.cancel(ticket)
    w.enqueue(limiter, "standard", "s1")
    w.enqueue(limiter, "standard", "s2")
    w.enqueue(limiter, "interactive", "i1")  # full: evicts b1, not a cancelled waiter
    assert [tag for tag, _ in w.shed] == ["b1"]
    assert limiter.stats().queued == {"interactive": 1, "standard": 2, "batch": 0}


def test_a_queue_whose_waiters_all_left_behaves_as_empty() -> None:
    limiter, _, _ = make(1, max_queue=3)
    held = limiter.try_acquire()
    assert held is not None
    w = Waiters()
    tickets = [
        limiter.enqueue(p, timeout=None, on_grant=w.grant(p), on_shed=w.on_shed(p))
        for p in DEFAULT_PRIORITIES
    ]
    for ticket in tickets:
        assert limiter.cancel(ticket)
    assert limiter.queued == 0
    assert limiter.estimated_wait("batch") == 0.0  # no latency sample yet
    held.success()  # nobody to hand the slot to
    assert w.granted == []
    assert limiter.inflight == 0
    held = limiter.try_acquire("batch")  # nobody queued: no waiting behind ghosts
    assert held is not None
    for tag in ("a", "b", "c"):
        w.enqueue(limiter, "standard", tag)  # the full max_queue is available again
    assert w.shed == []
    held.success()
    assert [tag for tag, _ in w.granted] == ["a"]


def test_a_call_whose_deadline_cannot_be_met_is_shed_at_once() -> None:
    limiter, _, clock = make(2)
    a = limiter.try_acquire()
    b = limiter.try_acquire()
    assert a is not None
    assert b is not None
    clock.advance(1.0)
    a.success()  # recent latency: 1 s; limit 2: a slot frees about every 0.5 s
    a = limiter.try_acquire()
    assert a is not None
    assert limiter.estimated_wait("standard") == pytest.approx(0.5)
    w = Waiters()
    w.enqueue(limiter, "standard", "patient", timeout=0.6)
    assert limiter.estimated_wait("standard") == pytest.approx(1.0)
    w.enqueue(limiter, "standard", "hurried", timeout=0.6)
    assert [tag for tag, _ in w.shed] == ["hurried"]
    error = w.shed[0][1]
    assert error.retry_after == pytest.approx(1.0)
    assert "deadline cannot be met" in str(error)
    assert limiter.stats().shed == {"queue_full": 0, "deadline": 1}
    assert limiter.queued == 1


def test_the_estimated_wait_counts_the_grants_due_before_the_call() -> None:
    limiter, _, clock = make(2)
    a = limiter.try_acquire()
    b = limiter.try_acquire()
    assert a is not None
    assert b is not None
    clock.advance(1.0)
    a.success()  # recent latency: 1 s; limit 2: a slot frees about every 0.5 s
    a = limiter.try_acquire()
    assert a is not None
    w = Waiters()
    for tag in ("b1", "b2", "b3"):
        w.enqueue(limiter, "batch", tag)
    w.enqueue(limiter, "interactive", "i1")
    # all at pass 0: i1 goes first (a tie), then b1 (pass 0) before a second
    # interactive call (pass 1/25); standard would start at pass 0, after i1 only; a
    # fourth batch call has its class and i1 ahead
    assert limiter.estimated_wait("interactive") == pytest.approx(1.5)
    assert limiter.estimated_wait("standard") == pytest.approx(1.0)
    assert limiter.estimated_wait("batch") == pytest.approx(2.5)
    clock.advance(0.5)
    a.success()
    assert [tag for tag, _ in w.granted] == ["i1"]


def test_the_estimated_wait_of_a_backlogged_class_uses_its_measured_service_rate() -> None:
    limiter, _, clock = make(1, max_queue=10_000)
    held = limiter.try_acquire()
    assert held is not None
    w = Waiters()
    for i in range(300):
        w.enqueue(limiter, "batch", f"b{i}")
        w.enqueue(limiter, "interactive", f"i{i}")
    for _ in range(280):  # a slot every 0.1 s; batch gets 3 of every 28
        clock.advance(0.1)
        held.ignore()  # no latency sample: only the measured time between grants
        held = w.granted[-1][1]
    live = limiter.stats().queued["batch"]
    assert live == 270
    # the time between grants to batch approaches 28 / 3 slots of 0.1 s (a moving
    # average that started at the 0.1 s its first waiter waited)
    gap = limiter.estimated_wait("batch") / (live + 1)
    assert gap > 0.6
    assert gap < 28 / 3 * 0.1


def test_retry_after_is_1_s_before_the_first_latency_sample() -> None:
    limiter, _, _ = make(1, max_queue=0)
    assert limiter.try_acquire() is not None
    w = Waiters()
    w.enqueue(limiter, "interactive", "x")
    assert w.shed[0][1].retry_after == 1.0


def test_retry_after_is_at_least_the_time_between_freed_slots_and_0_1_s() -> None:
    limiter, alg, clock = make(4, max_queue=0)
    held = limiter.try_acquire()
    assert held is not None
    clock.advance(0.02)
    held.success()  # recent latency 20 ms: a slot frees every 5 ms at limit 4
    alg.limit = 1
    assert limiter.try_acquire() is not None
    w = Waiters()
    w.enqueue(limiter, "standard", "fast")
    assert w.shed[-1][1].retry_after == pytest.approx(0.1)  # the floor
    slow, _, clock = make(2, max_queue=1)
    held = slow.try_acquire()
    assert held is not None
    clock.advance(3.0)
    held.success()  # recent latency 3 s: a slot frees every 1.5 s
    assert slow.try_acquire() is not None
    assert slow.try_acquire() is not None
    w.enqueue(slow, "batch", "queued")
    w.enqueue(slow, "interactive", "evicts")  # the batch waiter is evicted
    assert [tag for tag, _ in w.shed] == ["fast", "queued"]
    # the estimated wait of a batch call at that moment: the next slot
    assert w.shed[-1][1].retry_after == pytest.approx(1.5)


def test_a_waiter_past_its_deadline_is_shed_by_expire() -> None:
    limiter, _, clock = make(1)
    held = limiter.try_acquire()
    assert held is not None
    w = Waiters()
    w.enqueue(limiter, "standard", "short", timeout=1.0)
    w.enqueue(limiter, "interactive", "long", timeout=5.0)
    w.enqueue(limiter, "batch", "forever")
    assert limiter.next_deadline() == 1.0
    clock.advance(0.999)
    assert limiter.expire() == 0
    clock.advance(0.001)
    assert limiter.expire() == 1
    assert [tag for tag, _ in w.shed] == ["short"]
    assert limiter.next_deadline() == 5.0
    clock.advance(10.0)
    held.success()  # "long" is overdue but expire() was not called: shed, not granted
    assert [tag for tag, _ in w.shed] == ["short", "long"]
    assert [tag for tag, _ in w.granted] == ["forever"]
    assert limiter.next_deadline() is None


def test_a_cancelled_waiter_leaves_no_trace() -> None:
    limiter, _, _ = make(1)
    held = limiter.try_acquire()
    assert held is not None
    w = Waiters()
    ticket = limiter.enqueue(
        "standard", timeout=1.0, on_grant=w.grant("gone"), on_shed=w.on_shed("gone")
    )
    w.enqueue(limiter, "standard", "next")
    assert limiter.cancel(ticket)
    assert not limiter.cancel(ticket)
    assert limiter.queued == 1
    assert limiter.next_deadline() is None
    held.success()
    assert [tag for tag, _ in w.granted] == ["next"]
    assert w.shed == []


def test_a_waiter_that_refuses_the_grant_passes_the_slot_on() -> None:
    limiter, _, _ = make(1)
    held = limiter.try_acquire()
    assert held is not None
    w = Waiters()
    limiter.enqueue("standard", timeout=None, on_grant=lambda p: False, on_shed=w.on_shed("x"))
    w.enqueue(limiter, "standard", "next")
    held.success()
    assert [tag for tag, _ in w.granted] == ["next"]
    assert limiter.inflight == 1
    assert limiter.stats().granted == 2


def test_a_lower_limit_holds_grants_until_inflight_falls_below_it() -> None:
    limiter, alg, _ = make(3)
    permits = [limiter.try_acquire() for _ in range(3)]
    w = Waiters()
    w.enqueue(limiter, "standard", "a")
    alg.limit = 1
    for permit in permits[:2]:
        assert permit is not None
        permit.success()
    assert w.granted == []
    assert permits[2] is not None
    permits[2].success()
    assert [tag for tag, _ in w.granted] == ["a"]


def test_stats() -> None:
    limiter, _, _ = make(1, max_queue=1)
    permit = limiter.try_acquire("interactive")
    assert permit is not None
    w = Waiters()
    w.enqueue(limiter, "batch", "a")
    w.enqueue(limiter, "batch", "b")
    assert limiter.stats() == ConcurrencyStats(
        limit=1,
        inflight=1,
        queued={"interactive": 0, "standard": 0, "batch": 1},
        granted=1,
        shed={"queue_full": 1, "deadline": 0},
        dropped=0,
    )


# -- arguments ----------------------------------------------------------------------------


def test_an_unknown_priority_names_it_and_the_known_ones() -> None:
    limiter, _, _ = make(1)
    message = r"unknown priority 'urgent'; known: 'interactive', 'standard', 'batch'"
    with pytest.raises(ConfigError, match=message):
        limiter.try_acquire("urgent")
    w = Waiters()
    with pytest.raises(ConfigError, match=message):
        w.enqueue(limiter, "urgent", "x")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_queue": -1}, r"max_queue must be an int >= 0, got -1"),
        ({"priorities": {}}, r"priorities must be a non-empty mapping of name to weight, got \{\}"),
        ({"priorities": {"a": 0}}, r"priorities\['a'\] must be an int >= 1, got 0"),
        ({"priorities": {"": 1}}, r"priorities: names must be non-empty strings, got ''"),
    ],
)
def test_bad_limiter_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ConcurrencyLimiter(FixedLimit(1), **kwargs)  # type: ignore[arg-type]


def test_a_negative_timeout_is_rejected() -> None:
    limiter, _, _ = make(1)
    assert limiter.try_acquire() is not None
    w = Waiters()
    with pytest.raises(ConfigError, match=r"timeout must be a number >= 0, got -1.0"):
        w.enqueue(limiter, "standard", "x", timeout=-1.0)


# -- asyncio ------------------------------------------------------------------------------


async def test_acquire_is_immediate_with_a_free_slot() -> None:
    limiter = ConcurrencyLimiter(FixedLimit(1), name="gpt-east")
    async with await limiter.acquire("interactive") as permit:
        assert limiter.inflight == 1
        assert permit.priority == "interactive"
    assert permit.done
    assert limiter.inflight == 0
    assert limiter.stats().granted == 1


async def test_a_block_that_raises_releases_without_a_sample() -> None:
    limiter, alg, _ = make(1)
    with pytest.raises(RuntimeError, match="boom"):
        async with await limiter.acquire():
            raise RuntimeError("boom")
    assert limiter.inflight == 0
    assert alg.samples == []


async def test_acquire_waits_for_a_released_slot() -> None:
    limiter, _, _ = make(1)
    held = await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire("batch", timeout=5.0))
    await asyncio.sleep(0)
    assert limiter.queued == 1
    held.success()
    permit = await waiter
    assert permit.priority == "batch"
    assert limiter.inflight == 1


async def test_acquire_sheds_a_full_queue_with_retry_after() -> None:
    limiter, _, clock = make(1, max_queue=0, name="gpt")
    held = await limiter.acquire()
    clock.advance(0.4)
    held.success()
    held = await limiter.acquire()
    with pytest.raises(
        OverloadedError, match=r"limiter 'gpt' shed a 'batch' call: queue is full"
    ) as info:
        await limiter.acquire("batch")
    assert info.value.priority == "batch"
    assert info.value.retry_after == pytest.approx(0.4)


async def test_acquire_times_out_in_the_queue() -> None:
    limiter, _, _ = make(1)
    await limiter.acquire()
    with pytest.raises(OverloadedError, match="deadline cannot be met") as info:
        await limiter.acquire("interactive", timeout=0.01)  # a real, short timer
    assert info.value.priority == "interactive"
    assert limiter.queued == 0
    assert limiter.stats().shed["deadline"] == 1


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    limiter, _, _ = make(1)
    held = await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire(timeout=5.0))
    await asyncio.sleep(0)
    assert limiter.queued == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.queued == 0
    held.success()
    assert limiter.inflight == 0


async def test_a_waiter_cancelled_after_its_grant_gives_the_slot_back() -> None:
    limiter, alg, _ = make(1)
    held = await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    held.ignore()  # grants the waiter's future ...
    waiter.cancel()  # ... but the task is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.inflight == 0
    assert limiter.queued == 0
    assert alg.samples == []


async def test_acquire_rejects_bad_arguments() -> None:
    limiter, _, _ = make(1)
    with pytest.raises(ConfigError, match="unknown priority 'vip'"):
        await limiter.acquire("vip")
    with pytest.raises(ConfigError, match=r"timeout must be a number >= 0, got -2.0"):
        await limiter.acquire(timeout=-2.0)
