"""The open loop keeps its schedule and times from intended send times; the closed
loop keeps its concurrency. Time is a fake clock that jumps: nothing sleeps."""

from __future__ import annotations

import asyncio
import itertools
import math
import statistics

import pytest

from hotpath.loadgen import (
    OpenSchedule,
    Outcome,
    Recorder,
    RequestSpec,
    Shot,
    arrival_offsets,
    run_closed_loop,
    run_open_loop,
)


def _requests() -> itertools.cycle[RequestSpec]:
    return itertools.cycle([RequestSpec(b"{}", stream=False, key="k", meaning="k")])


class JumpClock:
    """Time moves only when the loop sleeps: to the deadline, plus ``stall`` seconds
    the first time a deadline reaches ``stall_at``. Tasks created before a sleep
    run (at the current time) before time moves."""

    def __init__(self, stall_at: float = math.inf, stall: float = 0.0) -> None:
        self.t = 0.0
        self.stall_at = stall_at
        self.stall = stall

    def now(self) -> float:
        return self.t

    async def sleep_until(self, deadline: float) -> None:
        await asyncio.sleep(0)
        self.t = max(self.t, deadline)
        if deadline >= self.stall_at:
            self.t += self.stall
            self.stall_at = math.inf


def test_uniform_arrivals_are_evenly_spaced() -> None:
    offsets = list(itertools.islice(arrival_offsets(50, "uniform", 0), 5))
    assert offsets == [0.0, 0.02, 0.04, 0.06, 0.08]


def test_poisson_arrivals_are_seeded_with_exponential_gaps() -> None:
    a = list(itertools.islice(arrival_offsets(200, "poisson", 3), 20_000))
    b = list(itertools.islice(arrival_offsets(200, "poisson", 3), 20_000))
    c = list(itertools.islice(arrival_offsets(200, "poisson", 4), 20_000))
    assert a == b
    assert a != c
    gaps = [y - x for x, y in itertools.pairwise(a)]
    assert min(gaps) >= 0
    assert abs(statistics.fmean(gaps) - 1 / 200) < 0.05 / 200
    # exponential: the standard deviation equals the mean
    assert abs(statistics.pstdev(gaps) - 1 / 200) < 0.05 / 200


def test_schedule_hands_out_overdue_requests_with_their_own_intended_times() -> None:
    schedule = OpenSchedule(arrival_offsets(10, "uniform", 0), warmup=0.2, duration=1.0, limit=None)
    assert [d.offset for d in schedule.due(0.0)] == [0.0]
    assert schedule.next_offset() == 0.1
    late = schedule.due(0.55)  # woke 0.45 s late: four requests at once
    assert [d.index for d in late] == [1, 2, 3, 4, 5]
    assert [d.offset for d in late] == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert [d.measured for d in late] == [False, True, True, True, True]
    rest = schedule.due(10.0)
    assert [d.offset for d in rest] == pytest.approx([0.6, 0.7, 0.8, 0.9, 1.0, 1.1])
    assert schedule.next_offset() is None  # the schedule ends at warmup + duration


def test_schedule_stops_after_the_measured_request_limit() -> None:
    schedule = OpenSchedule(arrival_offsets(10, "uniform", 0), warmup=0.25, duration=None, limit=4)
    due = schedule.due(100.0)
    assert [d.measured for d in due] == [False, False, False, True, True, True, True]
    assert schedule.next_offset() is None


async def test_open_loop_keeps_the_schedule_through_a_stall_and_times_from_intended() -> None:
    clock = JumpClock(stall_at=1.0, stall=0.305)
    shots: list[Shot] = []

    async def send(spec: RequestSpec) -> Outcome:
        return Outcome(end=clock.now() + 0.010)

    schedule = OpenSchedule(arrival_offsets(100, "uniform", 0), warmup=0, duration=2.0, limit=None)
    await run_open_loop(
        schedule, _requests(), send, shots.append, clock=clock, start=0.0, max_in_flight=1000
    )
    shots.sort(key=lambda s: s.index)
    assert len(shots) == 200  # nothing skipped: the stall did not thin the schedule
    assert [s.intended for s in shots] == pytest.approx([i / 100 for i in range(200)])
    stalled = [s for s in shots if 1.0 <= s.intended <= 1.305]
    assert len(stalled) == 31
    for shot in stalled:
        assert shot.sent == pytest.approx(1.305)
        assert shot.lag == pytest.approx(1.305 - shot.intended)
        assert shot.latency == pytest.approx(0.010 + shot.lag)  # the wait counts
    for shot in shots:
        if shot not in stalled:
            assert shot.lag == pytest.approx(0.0)
            assert shot.latency == pytest.approx(0.010)

    recorder = Recorder(0.0, 0.0)
    for shot in shots:
        recorder(shot)
    result = recorder.result(name="t", url="u", load="l", workload="w", open_loop=True)
    assert result.lag is not None
    assert result.lag.max == pytest.approx(0.305)
    assert result.latency is not None
    assert result.latency.max == pytest.approx(0.315)
    assert result.offered_rate == pytest.approx(100.0)
    assert [s.sent for s in result.series[:2]] == [100, 100]
    assert sum(s.completed for s in result.series) == 200


async def test_open_loop_waits_for_a_slot_when_in_flight_is_full_and_shows_the_lag() -> None:
    clock = JumpClock()
    in_flight = peak = 0
    shots: list[Shot] = []

    async def send(spec: RequestSpec) -> Outcome:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        for _ in range(5):  # open across several of the loop's sleeps
            await asyncio.sleep(0)
        clock.t += 0.03  # 30 ms each, two at a time: slower than 100 req/s
        in_flight -= 1
        return Outcome(end=clock.now())

    schedule = OpenSchedule(arrival_offsets(100, "uniform", 0), warmup=0, duration=1.0, limit=None)
    await run_open_loop(
        schedule, _requests(), send, shots.append, clock=clock, start=0.0, max_in_flight=2
    )
    assert peak == 2
    assert len(shots) == 100
    assert sorted(s.intended for s in shots) == pytest.approx([i / 100 for i in range(100)])
    assert max(s.lag for s in shots) > 0
    for shot in shots:
        assert shot.latency >= shot.lag


async def test_closed_loop_never_exceeds_its_concurrency_and_stops_at_the_limit() -> None:
    clock = JumpClock()
    in_flight = peak = 0
    shots: list[Shot] = []

    async def send(spec: RequestSpec) -> Outcome:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        for _ in range(3):
            await asyncio.sleep(0)
        in_flight -= 1
        return Outcome(end=clock.now())

    await run_closed_loop(
        _requests(),
        send,
        shots.append,
        clock=clock,
        start=0.0,
        concurrency=7,
        warmup=0.0,
        duration=None,
        limit=100,
    )
    assert peak == 7
    assert len(shots) == 100
    assert sorted(s.index for s in shots) == list(range(100))


async def test_closed_loop_runs_for_its_duration_after_the_warmup() -> None:
    class TickClock:
        t = 0.0

        def now(self) -> float:
            return self.t

        async def sleep_until(self, deadline: float) -> None:
            raise AssertionError("a closed loop does not sleep")

    clock = TickClock()
    shots: list[Shot] = []

    async def send(spec: RequestSpec) -> Outcome:
        await asyncio.sleep(0)
        clock.t += 0.01  # every answer takes the clock 10 ms forward
        return Outcome(end=clock.t)

    await run_closed_loop(
        _requests(),
        send,
        shots.append,
        clock=clock,
        start=0.0,
        concurrency=4,
        warmup=0.1,
        duration=0.5,
        limit=None,
    )
    assert shots
    for shot in shots:
        assert shot.intended < 0.6
        assert shot.sent == shot.intended
        assert shot.measured == (shot.intended >= 0.1)
    assert any(not s.measured for s in shots)
    assert clock.t >= 0.6


def _shot(index: int, intended: float, outcome: Outcome) -> Shot:
    spec = RequestSpec(b"{}", stream=False, key="k", meaning="k")
    return Shot(index, intended, intended, spec, outcome)


def test_a_timed_out_request_does_not_stretch_the_throughput_window() -> None:
    recorder = Recorder(0.0, 0.0)
    for i in range(100):  # 100 answers in the first second, each 10 ms
        recorder(_shot(i, i / 100, Outcome(end=i / 100 + 0.01)))
    recorder(_shot(100, 0.5, Outcome(end=60.5, error="timeout")))
    result = recorder.result(name="t", url="u", load="l", workload="w", open_loop=True)
    assert result.throughput == pytest.approx(100 / 1.0)
    assert result.errors == {"timeout": 1}


def test_offered_rate_of_a_schedule_cut_short_by_its_request_limit() -> None:
    recorder = Recorder(0.0, 0.0)
    for i in range(100):  # 200/s for half a second, then the limit
        recorder(_shot(i, i / 200, Outcome(end=i / 200 + 0.001)))
    result = recorder.result(name="t", url="u", load="l", workload="w", open_loop=True)
    assert result.offered_rate == pytest.approx(200.0)


def test_a_target_that_answered_nothing_has_no_latency() -> None:
    recorder = Recorder(0.0, 0.0)
    for i in range(10):
        recorder(_shot(i, i / 10, Outcome(end=i / 10 + 0.001, status=401, error="HTTP 401")))
    result = recorder.result(name="t", url="u", load="l", workload="w", open_loop=False)
    assert result.latency is None
    assert result.ok == 0
