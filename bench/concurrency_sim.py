"""Adaptive concurrency limits under overload: a discrete-event simulation.

In the style of Netflix's concurrency-limits simulations. One upstream of fixed
capacity: ``C`` calls are served at full speed, more share it (processor sharing), so
each call's service time -- ``BASE`` seconds, jittered -- stretches by ``inflight / C``.
Open-loop Poisson arrivals offer 2x, 3x and 4x its capacity (``C / BASE`` calls/s), in a
mix of priority classes; each call has a client deadline of ``DEADLINE`` seconds from
arrival and waits for a permit at most ``QUEUE_BUDGET`` of it. A call still running at
its deadline is cancelled (the upstream drops the work) and counts as a drop for the
limiter; a call that finished by its deadline is goodput. The limiter under test is
:class:`hotpath.traffic._concurrency.ConcurrencyLimiter`, its synchronous core driven by
a simulated clock -- no asyncio, no sleeping; the whole run takes seconds. Writes
bench/results/concurrency_sim.md.
"""

from __future__ import annotations

import heapq
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench.timing import machine
from hotpath._errors import OverloadedError
from hotpath.traffic._concurrency import DEFAULT_PRIORITIES, ConcurrencyLimiter, Permit
from hotpath.traffic._limit_algorithms import (
    AIMDLimit,
    FixedLimit,
    Gradient2Limit,
    LimitAlgorithm,
    VegasLimit,
)

RESULTS = Path(__file__).parent / "results"
C = 32  # calls the upstream serves at full speed
BASE = 0.2  # seconds of service at full speed (mean)
JITTER = 0.25  # service time is BASE * uniform(1 - JITTER, 1 + JITTER)
CAPACITY = C / BASE  # calls per second
DEADLINE = 10 * BASE  # client deadline, from arrival
QUEUE_BUDGET = DEADLINE - 2 * BASE  # longest wait for a permit: leave 2 unloaded latencies
DURATION = 60.0  # simulated seconds per run
WINDOW = 1.0  # seconds; the algorithms' update window and the unit of convergence
STEADY_AFTER = 10 * WINDOW  # the convergence target; "steady" latency counts after it
MIXES = (
    (("interactive", 0.2), ("standard", 0.5), ("batch", 0.3)),
    (("interactive", 0.1), ("standard", 0.4), ("batch", 0.5)),
)
LOADS = (2.0, 3.0, 4.0)
SEED = 20260401


class SimClock:
    """The simulation's clock (satisfies hotpath's Clock protocol)."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return 1_700_000_000.0 + self.t

    def monotonic(self) -> float:
        return self.t


class Upstream:
    """Processor sharing with ``C`` servers: every call runs at ``min(1, C / n)`` speed.

    A virtual clock ``v`` advances at that speed; a call of ``work`` seconds admitted at
    ``v0`` finishes when ``v`` reaches ``v0 + work``, whatever comes and goes meanwhile.
    """

    def __init__(self) -> None:
        self.v = 0.0
        self.t = 0.0
        self.jobs: dict[int, float] = {}  # id -> virtual finish
        self.heap: list[tuple[float, int]] = []

    def _speed(self) -> float:
        return min(1.0, C / len(self.jobs)) if self.jobs else 1.0

    def advance(self, t: float) -> None:
        self.v += (t - self.t) * self._speed()
        self.t = t

    def add(self, job: int, work: float) -> None:
        finish = self.v + work
        self.jobs[job] = finish
        heapq.heappush(self.heap, (finish, job))

    def cancel(self, job: int) -> None:
        del self.jobs[job]

    def next_finish(self) -> tuple[float, int] | None:
        heap = self.heap
        while heap and self.jobs.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        if not heap:
            return None
        finish, job = heap[0]
        return self.t + max(0.0, finish - self.v) / self._speed(), job

    def finish(self, job: int) -> None:
        heapq.heappop(self.heap)
        del self.jobs[job]


@dataclass
class Call:
    cls: str
    arrival: float
    work: float
    state: str = "new"  # queued | waiting | running | done | shed | timeout
    permit: Permit | None = None


@dataclass
class Outcome:
    name: str
    load: float
    goodput: float  # fraction of capacity
    latency: dict[str, list[float]]
    steady: dict[str, list[float]]  # latency of calls arriving after STEADY_AFTER
    offered: dict[str, int]
    shed: dict[str, int]
    timeouts: dict[str, int]
    expired: int = 0  # shed by the deadline after queueing: the estimated wait was too low
    limits: list[int] = field(default_factory=list)


ARRIVE, DEADLINE_EV, TICK = 0, 1, 2


Mix = tuple[tuple[str, float], ...]


def simulate(
    algorithm: LimitAlgorithm,
    load: float,
    name: str,
    mix: Mix,
    seed: int = SEED,
    priorities: Mapping[str, int] = DEFAULT_PRIORITIES,
) -> Outcome:
    rng = random.Random(seed)
    clock = SimClock()
    limiter = ConcurrencyLimiter(algorithm, clock=clock, max_queue=1000, priorities=priorities)
    upstream = Upstream()
    rate = load * CAPACITY
    names = [c for c, _ in mix]
    weights = [w for _, w in mix]
    calls: dict[int, Call] = {}
    events: list[tuple[float, int, int]] = [(0.0, ARRIVE, 0), (WINDOW, TICK, -1)]
    out = Outcome(
        name,
        load,
        0.0,
        {c: [] for c in names},
        {c: [] for c in names},
        dict.fromkeys(names, 0),
        dict.fromkeys(names, 0),
        dict.fromkeys(names, 0),
    )
    good = 0

    def dispatch(job: int) -> Callable[[Permit], bool]:
        def on_grant(permit: Permit) -> bool:
            call = calls[job]
            call.state, call.permit = "running", permit
            upstream.add(job, call.work)
            return True

        return on_grant

    def shed(job: int) -> Callable[[OverloadedError], None]:
        def on_shed(error: OverloadedError) -> None:
            call = calls[job]
            if call.state == "waiting":
                out.expired += 1
            call.state = "shed"
            out.shed[call.cls] += 1

        return on_shed

    while True:
        nxt = upstream.next_finish()
        if events and (nxt is None or events[0][0] <= nxt[0]):
            t, kind, job = heapq.heappop(events)
            if t > DURATION:
                break
            upstream.advance(t)
            clock.t = t
            limiter.expire()  # no-op unless a waiter's queue budget ran out
            if kind == ARRIVE:
                cls = rng.choices(names, weights)[0]
                work = BASE * rng.uniform(1 - JITTER, 1 + JITTER)
                calls[job] = Call(cls, t, work, "queued")
                out.offered[cls] += 1
                heapq.heappush(events, (t + DEADLINE, DEADLINE_EV, job))
                heapq.heappush(events, (t + rng.expovariate(rate), ARRIVE, job + 1))
                limiter.enqueue(
                    cls, timeout=QUEUE_BUDGET, on_grant=dispatch(job), on_shed=shed(job)
                )
                if calls[job].state == "queued":
                    calls[job].state = "waiting"  # neither granted nor shed on arrival
            elif kind == DEADLINE_EV:
                call = calls[job]
                if call.state == "running":
                    call.state = "timeout"
                    out.timeouts[call.cls] += 1
                    upstream.cancel(job)
                    assert call.permit is not None
                    call.permit.dropped()
                del calls[job]
            else:
                out.limits.append(limiter.limit)
                heapq.heappush(events, (t + WINDOW, TICK, -1))
        elif nxt is not None:
            t, job = nxt
            if t > DURATION:
                break
            upstream.advance(t)
            clock.t = t
            upstream.finish(job)
            call = calls[job]
            call.state = "done"
            good += 1
            out.latency[call.cls].append(t - call.arrival)
            if call.arrival >= STEADY_AFTER:
                out.steady[call.cls].append(t - call.arrival)
            assert call.permit is not None
            call.permit.success()
        else:
            break
    out.goodput = good / DURATION / CAPACITY
    return out


def pct(samples: list[float], q: float) -> float:
    if not samples:
        return math.nan
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def convergence(limits: list[int], band: float = 0.2) -> tuple[float, int | None]:
    """Settled limit (median of the second half) and the first window from which the
    limit stays within +-``band`` of it (``None``: it never does)."""
    settled = statistics.median(limits[len(limits) // 2 :])
    first = None
    for i in range(len(limits) - 1, -1, -1):
        if abs(limits[i] - settled) > band * settled:
            break
        first = i + 1
    return settled, first


Config = tuple[str, Callable[[], LimitAlgorithm], bool]


def configs() -> list[Config]:
    """(row label, algorithm factory, adaptive?)"""
    return [
        ("no limit", lambda: FixedLimit(10**9), False),
        (f"fixed = C ({C})", lambda: FixedLimit(C), False),
        ("AIMD, timeout 5 s (default)", lambda: AIMDLimit(), True),
        (f"AIMD, timeout {2 * BASE:g} s", lambda: AIMDLimit(timeout=2 * BASE), True),
        ("Vegas", lambda: VegasLimit(), True),
        ("Gradient2", lambda: Gradient2Limit(), True),
    ]


def ratio(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2f}"


def table(
    mix: Mix,
    u99: float,
    rows_of: list[Config],
    priorities: Mapping[str, int] = DEFAULT_PRIORITIES,
) -> tuple[list[str], int]:
    rows = []
    met = 0
    for load in LOADS:
        for label, factory, adaptive in rows_of:
            res = simulate(factory(), load, label, mix, priorities=priorities)
            r99 = pct(res.latency["interactive"], 0.99) / u99
            s99 = pct(res.steady["interactive"], 0.99) / u99
            settled, conv = convergence(res.limits) if adaptive else (math.nan, None)
            lost = " / ".join(
                f"{100 * (res.shed[c] + res.timeouts[c]) / max(1, res.offered[c]):.0f}"
                for c, _ in mix
            )
            expired = 100 * res.expired / max(1, sum(res.offered.values()))
            conv_txt = "-" if not adaptive else (f"{conv}" if conv is not None else "never")
            settled_txt = "-" if not adaptive else f"{settled:.0f}"
            ok = res.goodput >= 0.9 and r99 <= 2 and (not adaptive or (conv or 99) <= 10)
            met += ok
            rows.append(
                f"| {load:g}x | {label} | {100 * res.goodput:.0f} | {r99:.2f} | {ratio(s99)} | "
                f"{lost} | {expired:.1f} | {settled_txt} | {conv_txt} | "
                f"{'yes' if ok else 'no'} |"
            )
            print(rows[-1], flush=True)
    return rows, met


HEADER = [
    "| load | limiter | goodput % | interactive p99 x | p99 x after 10 s | "
    "lost % (int / std / batch) | expired in queue % | settled limit | "
    "convergence (windows) | meets targets |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
]


def mix_name(mix: Mix) -> str:
    return ", ".join(f"{int(100 * w)}% {c}" for c, w in mix)


def main() -> int:
    started = time.perf_counter()
    unloaded = simulate(FixedLimit(10**9), 0.3, "unloaded", MIXES[0])
    u50 = pct(unloaded.latency["interactive"], 0.5)
    u99 = pct(unloaded.latency["interactive"], 0.99)
    sections = []
    runs = 1
    met = 0
    for mix in MIXES:
        rows, ok = table(mix, u99, configs())
        runs += len(rows)
        met += ok
        offered = [f"{mix[0][1] * load * CAPACITY:.0f}" for load in LOADS]
        weights = DEFAULT_PRIORITIES
        fair = weights["interactive"] / sum(weights.values()) * CAPACITY
        sections += [
            f"## Mix: {mix_name(mix)}",
            "",
            f"Interactive offers {' / '.join(offered)} calls/s at "
            f"{' / '.join(f'{load:g}x' for load in LOADS)}; its share when every class is "
            f"backlogged is 25/38 of the capacity, {fair:.0f} calls/s.",
            "",
            *HEADER,
            *rows,
            "",
        ]
    elapsed = time.perf_counter() - started
    text = "\n".join(
        [
            "# Adaptive concurrency limits under overload (simulation)",
            "",
            f"Machine: {machine()}. Date: {time.strftime('%Y-%m-%d')}. "
            f"Whole run: {elapsed:.1f} s wall for {runs} simulated runs "
            f"(`python -m bench.concurrency_sim`).",
            "",
            f"Upstream: {C} calls at full speed, processor sharing above that (latency "
            f"grows as inflight / {C}); service {BASE * 1000:.0f} ms +-{100 * JITTER:.0f}% "
            f"(uniform), so capacity = {CAPACITY:.0f} calls/s. Poisson arrivals at 2x, 3x "
            f"and 4x capacity; client deadline {DEADLINE:g} s from arrival, of which at most "
            f"{QUEUE_BUDGET:g} s may be spent waiting for a permit (the `timeout` of the "
            f"call); a call still running at its deadline is cancelled and fed to the "
            f"limiter as a drop. Priorities 25 : 10 : 3 as shares (weighted fair queueing "
            f"between the classes, FIFO within one), queue of 1000. {DURATION:.0f} s "
            f"simulated per run, window = {WINDOW:g} s, seed {SEED}, every algorithm at "
            f"its defaults (initial limit 20) except where the row says. "
            f"Unloaded interactive latency (0.3x load, no limit): p50 {u50 * 1000:.0f} ms, "
            f"p99 {u99 * 1000:.0f} ms.",
            "",
            "Goodput: calls finished by their deadline, % of capacity. Interactive p99 x: "
            "end-to-end latency (queue + upstream) over the unloaded p99, for the whole "
            "run and for calls arriving after the first 10 windows. Lost: shed by the "
            "limiter or timed out, % of offered, per class. Expired in queue: shed at its "
            "deadline after queueing, % of all offered (the estimated wait let it in but "
            "was too low; the rest of the shed calls were refused at arrival). "
            "Convergence: first window "
            "from which the limit stays within +-20% of its settled value (median of the "
            "second half). Targets: goodput >= 90, whole-run p99 x <= 2, convergence "
            "<= 10 windows.",
            "",
            f"Rows meeting every target: {met} of {len(MIXES) * len(LOADS) * len(configs())} "
            f"(the 'no limit' rows are the baseline and meet none).",
            "",
            *sections,
        ]
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "concurrency_sim.md").write_text(text)
    total = len(MIXES) * len(LOADS) * len(configs())
    print(f"{elapsed:.1f} s; {met}/{total} rows meet the targets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
