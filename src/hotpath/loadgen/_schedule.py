"""The open loop's schedule: when each request is due, as a plain state machine.

:func:`arrival_offsets` draws the intended send times (seconds from the start of
the run) once from a seed; :class:`OpenSchedule` hands out the requests that are
due at a given elapsed time. It holds no clock and never sleeps: the runner asks
it what is due now and when the next one is, so tests feed it any time they like.

A request keeps its intended time however late it goes out. When the sender
falls behind (a stalled event loop, a full in-flight limit), the requests due
meanwhile come out together at the next call, each with its own intended time:
their latency is counted from then (no coordinated omission) and the gap shows
as send lag, never as requests that were not sent.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from hotpath.loadgen._config import Arrivals

__all__ = ["Due", "OpenSchedule", "arrival_offsets"]


def arrival_offsets(rate: float, arrivals: Arrivals, seed: int) -> Iterator[float]:
    """Intended send times, seconds from the start, increasing without end.

    ``"uniform"``: request *i* at ``i / rate``. ``"poisson"``: gaps drawn from an
    exponential distribution of mean ``1 / rate`` (a Poisson process), from
    ``random.Random(seed)``; the first request goes at 0.
    """
    if arrivals == "uniform":
        i = 0
        while True:
            yield i / rate
            i += 1
    rng = random.Random(seed)
    t = 0.0
    while True:
        yield t
        t += rng.expovariate(rate)


@dataclass(frozen=True, slots=True)
class Due:
    """Request ``index`` (0, 1, 2 ... in schedule order) was due at ``offset``
    seconds from the start; ``measured`` is false during the warm-up."""

    index: int
    offset: float
    measured: bool


class OpenSchedule:
    """The requests of an open loop, due at fixed offsets from the start.

    The schedule covers ``warmup + duration`` seconds (``duration=None``: no
    limit) and at most ``limit`` measured requests (those due after the warm-up;
    ``None``: no limit); at least one of the two must be set.
    """

    __slots__ = ("_end", "_index", "_limit", "_measured", "_next", "_offsets", "_warmup")

    def __init__(
        self,
        offsets: Iterator[float],
        *,
        warmup: float,
        duration: float | None,
        limit: int | None,
    ) -> None:
        if duration is None and limit is None:
            raise ValueError("OpenSchedule: give a duration, a limit, or both")
        self._offsets = offsets
        self._warmup = warmup
        self._end = math.inf if duration is None else warmup + duration
        self._limit = limit
        self._index = 0
        self._measured = 0
        self._next: float | None = self._draw()

    def _draw(self) -> float | None:
        if self._limit is not None and self._measured >= self._limit:
            return None
        offset = next(self._offsets)
        return offset if offset < self._end else None

    def next_offset(self) -> float | None:
        """When the next request is due (seconds from the start); ``None``: no more."""
        return self._next

    def due(self, elapsed: float) -> list[Due]:
        """Every request due at or before ``elapsed`` seconds and not handed out yet,
        in order, each with its intended offset."""
        out: list[Due] = []
        while self._next is not None and self._next <= elapsed:
            measured = self._next >= self._warmup
            out.append(Due(self._index, self._next, measured))
            self._index += 1
            self._measured += measured
            self._next = self._draw()
        return out
