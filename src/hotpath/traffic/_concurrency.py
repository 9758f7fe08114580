"""A concurrency limiter per upstream deployment, with priority classes and a queue.

The core is a synchronous state machine driven by its clock: :meth:`try_acquire`,
:meth:`ConcurrencyLimiter.enqueue` (callbacks on grant or shed), :meth:`expire` and
:meth:`cancel`. :meth:`ConcurrencyLimiter.acquire` wraps it for asyncio with a future and
a ``loop.call_later`` timer per waiter. Simulations drive the core directly.

The weights are shares. Scheduling between classes is weighted fair queueing by stride
scheduling: each class has a virtual *pass*; a freed slot goes to the head waiter (FIFO
within a class) of the backlogged class with the smallest pass (a tie goes to the
heavier class), whose pass then advances by its stride, ``1 / weight``. A class that
becomes backlogged after being idle starts at ``max(its pass, virtual time)`` (the pass
of the latest grant), so idleness earns no burst credit. Under sustained pressure the
backlogged classes get slots in the ratio of their weights (25 : 10 : 3 by default); a
class asking for less than its share is served at the next free slot without waiting
behind the others' backlog, and the share it leaves unused goes to the others (work
conserving). A class asking for more than its share queues: that is the point of a
share. A grant costs O(number of classes). Not thread-safe: use it from one event loop.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Literal

from hotpath._clock import Clock, SystemClock
from hotpath._errors import ConfigError, OverloadedError, short_repr
from hotpath._options import check_count, check_non_negative
from hotpath.traffic._limit_algorithms import LimitAlgorithm

__all__ = [
    "DEFAULT_PRIORITIES",
    "ConcurrencyLimiter",
    "ConcurrencyStats",
    "Permit",
    "Ticket",
]

DEFAULT_PRIORITIES: Mapping[str, int] = MappingProxyType(
    {"interactive": 25, "standard": 10, "batch": 3}
)

ShedReason = Literal["queue_full", "deadline"]
_RTT_SMOOTHING = 0.1  # weight of a new sample in the recent-latency average
_GAP_SMOOTHING = 0.05  # the same for the time between grants to a class
_MIN_RETRY_AFTER = 0.1  # seconds; a shed call is never told to retry at once
_UNKNOWN_RETRY_AFTER = 1.0  # seconds, before the first latency sample


@dataclass(frozen=True, slots=True)
class ConcurrencyStats:
    """A snapshot of a limiter. ``queued`` is per priority class, ``shed`` per reason
    (``queue_full``, ``deadline``); ``dropped`` counts permits ended by
    :meth:`Permit.dropped`."""

    limit: int
    inflight: int
    queued: Mapping[str, int]
    granted: int
    shed: Mapping[str, int]
    dropped: int


class Permit:
    """One granted slot. End it with exactly one of :meth:`success`, :meth:`dropped` or
    :meth:`ignore` (later calls are no-ops), or use it as an async context manager: on
    exit it calls :meth:`success` unless one was called, or :meth:`ignore` if the block
    raised."""

    __slots__ = ("_done", "_inflight", "_limiter", "_start", "priority")

    def __init__(self, limiter: ConcurrencyLimiter, priority: str, inflight: int) -> None:
        self._limiter = limiter
        self._start = limiter._clock.monotonic()
        self._inflight = inflight
        self._done = False
        self.priority = priority

    def success(self, rtt: float | None = None) -> None:
        """The call worked. ``rtt``: the latency to learn from (e.g. time to first token);
        ``None`` measures from the grant until now."""
        if rtt is not None:
            rtt = check_non_negative(rtt, "rtt")
        self._end(rtt, dropped=False, sample=True)

    def dropped(self) -> None:
        """The upstream signalled overload (timeout, 429, 503): the limit backs off."""
        self._end(None, dropped=True, sample=True)

    def ignore(self) -> None:
        """Release the slot without teaching the limiter (client error, cancelled call)."""
        self._end(None, dropped=False, sample=False)

    @property
    def done(self) -> bool:
        return self._done

    def _end(self, rtt: float | None, *, dropped: bool, sample: bool) -> None:
        if self._done:
            return
        self._done = True
        if rtt is None:
            rtt = self._limiter._clock.monotonic() - self._start
        self._limiter._release(self, rtt, dropped=dropped, sample=sample)

    async def __aenter__(self) -> Permit:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.success()
        else:
            self.ignore()

    def __repr__(self) -> str:
        state = "done" if self._done else "held"
        return f"<Permit {self.priority} {state}>"


class Ticket:
    """A queued request for a permit (see :meth:`ConcurrencyLimiter.enqueue`)."""

    __slots__ = ("_on_grant", "_on_shed", "_since", "deadline", "live", "priority")

    def __init__(
        self,
        priority: str,
        deadline: float | None,
        on_grant: Callable[[Permit], bool],
        on_shed: Callable[[OverloadedError], object],
    ) -> None:
        self.priority = priority
        self.deadline = deadline  # monotonic seconds, None: waits as long as it takes
        self.live = True  # still queued
        self._since = 0.0  # monotonic seconds at enqueue
        self._on_grant = on_grant
        self._on_shed = on_shed


class _Class:
    __slots__ = ("busy_since", "gap", "live", "pass_", "stride", "waiters", "weight")

    def __init__(self, weight: int, stride: int) -> None:
        self.weight = weight
        # virtual time in integer units (1 / weight scaled by the lcm of the weights:
        # exact, so ties are ties and nothing drifts)
        self.stride = stride
        self.pass_ = 0  # the virtual time of this class's next grant
        self.live = 0
        # FIFO; a cancelled or expired waiter stays (not live) until it reaches an end
        self.waiters: deque[Ticket] = deque()
        # seconds between grants to this class while it has waiters (moving average):
        # its real service rate, which heavier classes arriving later slow down
        self.gap: float | None = None
        self.busy_since: float | None = None


class ConcurrencyLimiter:
    """Limits the calls in flight to one upstream to ``algorithm.limit``.

    A call that finds a free slot and nobody queued goes at once; otherwise it queues in
    its priority class (``priorities`` maps class name to weight, a share of the slots
    under pressure) up to ``max_queue`` waiters in all (0: never queue). Freed slots are
    shared between the backlogged classes in the ratio of their weights, first in first
    out within a class (see the module docstring). A call is shed with
    :class:`~hotpath.OverloadedError` when the queue is full (an arrival of a heavier
    class evicts the newest waiter of the lightest waiting class instead), when its
    estimated wait (:meth:`estimated_wait`) exceeds its timeout, or when the timeout
    passes while it waits. The error's ``retry_after`` is always a positive number of
    seconds: the estimated wait for a slot of that class, at least the recent latency
    divided by the limit (the time between freed slots) and at least 0.1 s; 1 s before
    the first latency sample.
    """

    def __init__(
        self,
        algorithm: LimitAlgorithm,
        *,
        name: str = "",
        priorities: Mapping[str, int] = DEFAULT_PRIORITIES,
        max_queue: int = 1000,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(priorities, Mapping) or not priorities:
            raise ConfigError(
                f"priorities must be a non-empty mapping of name to weight, "
                f"got {short_repr(priorities)}"
            )
        for key, weight in priorities.items():
            if not isinstance(key, str) or not key:
                raise ConfigError(f"priorities: names must be non-empty strings, got {key!r}")
            check_count(weight, f"priorities[{key!r}]")
        self.name = name
        self._algorithm = algorithm
        self._max_queue = check_count(max_queue, "max_queue", minimum=0)
        self._clock: Clock = clock if clock is not None else SystemClock()
        scale = math.lcm(*priorities.values())
        self._classes = {key: _Class(weight, scale // weight) for key, weight in priorities.items()}
        self._vtime = 0  # the pass at which the latest slot was granted
        self._deadlines: list[tuple[float, int, Ticket]] = []
        self._seq = itertools.count()
        self._inflight = 0
        self._queued = 0
        self._granted = 0
        self._dropped = 0
        self._shed = {"queue_full": 0, "deadline": 0}
        self._rtt: float | None = None
        self._draining = False

    # -- state ------------------------------------------------------------------------

    @property
    def limit(self) -> int:
        return self._algorithm.limit

    @property
    def inflight(self) -> int:
        return self._inflight

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def algorithm(self) -> LimitAlgorithm:
        return self._algorithm

    def stats(self) -> ConcurrencyStats:
        return ConcurrencyStats(
            limit=self.limit,
            inflight=self._inflight,
            queued={key: cls.live for key, cls in self._classes.items()},
            granted=self._granted,
            shed=dict(self._shed),
            dropped=self._dropped,
        )

    def estimated_wait(self, priority: str) -> float:
        """Seconds a call of ``priority`` arriving now would wait for a slot (0 while the
        limiter has no latency sample and no measured time between grants yet).

        The larger of two figures. Measured: with waiters of its class, their number plus
        one times the measured time between grants to that class (its real service
        rate, slowed by the other classes taking their shares).
        Queued: the grants due before it under the current queue -- its own class's
        waiters, each other backlogged class's waiters whose pass comes first, and the
        calls above the limit -- times the time between freed slots (recent latency /
        limit).
        """
        cls = self._class(priority)
        measured = (cls.live + 1) * cls.gap if cls.live and cls.gap is not None else 0.0
        if self._rtt is None:
            return measured
        # the pass at which this call would be granted
        due = (cls.pass_ if cls.live else max(cls.pass_, self._vtime)) + cls.live * cls.stride
        grants = cls.live + 1 + max(0, self._inflight - max(1, self.limit))
        for other in self._classes.values():
            if other is cls or not other.live or other.pass_ > due:
                continue
            # grants to ``other`` at passes pass_, pass_ + stride, ... up to ``due``
            # (a tie goes to the heavier class)
            ahead = (due - other.pass_) // other.stride
            if other.pass_ + ahead * other.stride < due or other.weight > cls.weight:
                ahead += 1
            grants += min(other.live, ahead)
        return max(measured, grants * self._rtt / max(1, self.limit))

    # -- the sync core ----------------------------------------------------------------

    def try_acquire(self, priority: str = "standard") -> Permit | None:
        """A permit if a slot is free and nobody is queued, else ``None``."""
        self._class(priority)
        if self._queued or self._inflight >= self.limit:
            return None
        return self._grant(priority)

    def enqueue(
        self,
        priority: str,
        *,
        timeout: float | None,
        on_grant: Callable[[Permit], bool],
        on_shed: Callable[[OverloadedError], object],
    ) -> Ticket:
        """Ask for a permit; the answer comes through a callback, possibly before this
        returns. ``on_grant(permit)`` returns whether the permit is taken (``False``: the
        waiter is gone, the slot is passed on); ``on_shed(error)`` gets the
        :class:`~hotpath.OverloadedError`. ``timeout`` (seconds, ``None``: no deadline)
        bounds the wait; :meth:`expire` sheds waiters whose deadline has passed."""
        cls = self._class(priority)
        if timeout is not None:
            timeout = check_non_negative(timeout, "timeout")
        now = self._clock.monotonic()
        deadline = None if timeout is None else now + timeout
        ticket = Ticket(priority, deadline, on_grant, on_shed)
        ticket._since = now
        if not self._queued and self._inflight < self.limit:
            self._hand_over(ticket)
            return ticket
        wait = self.estimated_wait(priority)
        if timeout is not None and wait > timeout:
            ticket.live = False
            self._shed_ticket(ticket, "deadline", wait)
            return ticket
        if self._queued >= self._max_queue and not self._evict_for(cls):
            ticket.live = False
            self._shed_ticket(ticket, "queue_full", wait)
            return ticket
        if not cls.live:
            # backlogged again: no credit for the time it was idle
            cls.pass_ = max(cls.pass_, self._vtime)
            cls.busy_since = now
        cls.waiters.append(ticket)
        cls.live += 1
        self._queued += 1
        if deadline is not None:
            heapq.heappush(self._deadlines, (deadline, next(self._seq), ticket))
        return ticket

    def expire(self) -> int:
        """Shed every waiter whose deadline has passed; return how many."""
        now = self._clock.monotonic()
        heap = self._deadlines
        count = 0
        while heap and (heap[0][0] <= now or not heap[0][2].live):
            _, _, ticket = heapq.heappop(heap)
            if ticket.live:
                self._remove(ticket)
                self._shed_ticket(ticket, "deadline", self.estimated_wait(ticket.priority))
                count += 1
        return count

    def next_deadline(self) -> float | None:
        """The earliest deadline (monotonic seconds) of a queued waiter."""
        heap = self._deadlines
        while heap and not heap[0][2].live:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def cancel(self, ticket: Ticket) -> bool:
        """Take a waiter out of the queue; ``False`` if it was no longer queued."""
        if not ticket.live:
            return False
        self._remove(ticket)
        return True

    # -- asyncio ----------------------------------------------------------------------

    async def acquire(
        self,
        priority: str = "standard",
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the deadline drives queueing policy
    ) -> Permit:
        """Wait for a permit, at most ``timeout`` seconds (``None``: no deadline).

        Raises :class:`~hotpath.OverloadedError` (with ``priority`` and ``retry_after``)
        when the call is shed, :class:`~hotpath.ConfigError` for an unknown priority.
        A cancelled waiter leaves the queue (a permit granted meanwhile is released).
        """
        if timeout is not None:
            timeout = check_non_negative(timeout, "timeout")
        permit = self.try_acquire(priority)
        if permit is not None:
            return permit
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Permit] = loop.create_future()

        def on_grant(granted: Permit) -> bool:
            if fut.done():
                return False
            fut.set_result(granted)
            return True

        def on_shed(error: OverloadedError) -> None:
            if not fut.done():
                fut.set_exception(error)

        ticket = self.enqueue(priority, timeout=timeout, on_grant=on_grant, on_shed=on_shed)
        timer = None
        if ticket.live and timeout is not None:
            timer = loop.call_later(timeout, self._time_out, ticket)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                fut.result().ignore()
            self.cancel(ticket)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _time_out(self, ticket: Ticket) -> None:
        # the loop's timer may fire a hair before the clock reaches the deadline
        if ticket.live:
            self._remove(ticket)
            self._shed_ticket(ticket, "deadline", self.estimated_wait(ticket.priority))
        self.expire()

    # -- internals --------------------------------------------------------------------

    def _class(self, priority: str) -> _Class:
        cls = self._classes.get(priority)
        if cls is None:
            known = ", ".join(repr(k) for k in self._classes)
            raise ConfigError(f"unknown priority {short_repr(priority)}; known: {known}")
        return cls

    def _grant(self, priority: str) -> Permit:
        self._inflight += 1
        self._granted += 1
        return Permit(self, priority, self._inflight)

    def _hand_over(self, ticket: Ticket) -> bool:
        ticket.live = False
        permit = self._grant(ticket.priority)
        if ticket._on_grant(permit):
            return True
        permit._done = True  # the waiter is gone: take the slot back, learn nothing
        self._inflight -= 1
        self._granted -= 1
        return False

    def _remove(self, ticket: Ticket) -> None:
        ticket.live = False
        cls = self._classes[ticket.priority]
        cls.live -= 1
        if not cls.live:
            cls.busy_since = None
            cls.waiters.clear()  # only the dead are left
        self._queued -= 1

    def _shed_ticket(self, ticket: Ticket, reason: ShedReason, wait: float) -> None:
        """Shed ``ticket`` (already out of the queue); ``wait``: its estimated wait."""
        self._shed[reason] += 1
        what = "queue is full" if reason == "queue_full" else "deadline cannot be met"
        label = f"{self.name!r} " if self.name else ""
        if self._rtt is None:
            floor = _UNKNOWN_RETRY_AFTER
        else:
            floor = max(_MIN_RETRY_AFTER, self._rtt / max(1, self.limit))
        error = OverloadedError(
            f"concurrency limiter {label}shed a {ticket.priority!r} call: {what}",
            priority=ticket.priority,
            retry_after=max(floor, wait),
        )
        ticket._on_shed(error)

    def _evict_for(self, arrival: _Class) -> bool:
        """Shed the newest waiter of the lightest waiting class if it is lighter than
        ``arrival``; ``False`` if there is none (e.g. ``max_queue`` is 0)."""
        victim: _Class | None = None
        for cls in self._classes.values():
            lighter = cls.weight < (arrival if victim is None else victim).weight
            if cls.live and lighter:
                victim = cls
        if victim is None:
            return False
        waiters = victim.waiters
        while not waiters[-1].live:
            waiters.pop()
        ticket = waiters.pop()
        self._remove(ticket)
        self._shed_ticket(ticket, "queue_full", self.estimated_wait(ticket.priority))
        return True

    def _next_waiter(self, now: float) -> Ticket | None:
        """Take the head waiter of the backlogged class with the smallest pass (a tie:
        the heavier class) and advance that pass by the class's stride."""
        best: _Class | None = None
        for cls in self._classes.values():
            if cls.live and (
                best is None
                or cls.pass_ < best.pass_
                or (cls.pass_ == best.pass_ and cls.weight > best.weight)
            ):
                best = cls
        if best is None:
            return None
        waiters = best.waiters
        while not waiters[0].live:
            waiters.popleft()
        ticket = waiters.popleft()
        self._vtime = best.pass_
        best.pass_ += best.stride
        if best.busy_since is not None:
            gap = now - best.busy_since
            best.gap = gap if best.gap is None else best.gap + _GAP_SMOOTHING * (gap - best.gap)
        best.busy_since = now
        self._remove(ticket)
        return ticket

    def _drain(self) -> None:
        if self._draining:
            return  # a callback released a permit: the loop below carries on
        self._draining = True
        try:
            now = self._clock.monotonic()
            while self._queued and self._inflight < self.limit:
                ticket = self._next_waiter(now)
                if ticket is None:
                    break
                if ticket.deadline is not None and ticket.deadline <= now:
                    self._shed_ticket(ticket, "deadline", self.estimated_wait(ticket.priority))
                    continue
                self._hand_over(ticket)
        finally:
            self._draining = False

    def _release(self, permit: Permit, rtt: float, *, dropped: bool, sample: bool) -> None:
        self._inflight -= 1
        if sample:
            if dropped:
                self._dropped += 1
            else:
                self._rtt = (
                    rtt if self._rtt is None else self._rtt + _RTT_SMOOTHING * (rtt - self._rtt)
                )
            now = self._clock.monotonic()
            self._algorithm.update(now=now, rtt=rtt, inflight=permit._inflight, dropped=dropped)
        self._drain()

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return (
            f"<ConcurrencyLimiter{label} limit={self.limit} inflight={self._inflight} "
            f"queued={self._queued} {self._algorithm!r}>"
        )
