"""Access counts for warming: gathered in memory, persisted in the lower tiers.

Counting on every lookup must cost next to nothing, so counts accumulate in a
dict and are added to the lower tiers (Redis sorted set, SQLite column) in one
batch every ``interval`` seconds, checked every 1,024 lookups, and at close.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hotpath._clock import Clock
from hotpath.cache._memory import MemoryTier
from hotpath.cache._record import Record
from hotpath.cache._tier import Tier

__all__ = ["AccessCounts", "warm"]

_CHECK_EVERY = 1024
_MAX_PENDING = 100_000


class AccessCounts:
    __slots__ = ("_clock", "_counts", "_interval", "_next", "_ops", "_schedule", "_tiers")

    def __init__(
        self,
        tiers: Sequence[Tier],
        clock: Clock,
        interval: float,
        schedule: Callable[[], None],
    ) -> None:
        """``schedule()`` is called when a flush is due; it should arrange ``flush()``."""
        self._tiers = tuple(tiers)
        self._clock = clock
        self._interval = interval
        self._schedule = schedule
        self._counts: dict[str, int] = {}
        self._ops = 0
        self._next = clock.monotonic() + interval

    def count(self, key: str) -> None:
        if not self._tiers:
            return  # nothing would persist the counts
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1
        self._ops += 1
        if self._ops % _CHECK_EVERY == 0 and (
            self._clock.monotonic() >= self._next or len(counts) >= _MAX_PENDING
        ):
            self._next = self._clock.monotonic() + self._interval
            self._schedule()

    async def flush(self) -> None:
        self._next = self._clock.monotonic() + self._interval
        counts, self._counts = self._counts, {}
        if counts:
            for tier in self._tiers:
                await tier.add_hits(counts)


async def warm(
    l1: MemoryTier, lower: Sequence[Tier], n: int, fit: Callable[[Record], Record]
) -> int:
    """Put the ``n`` most accessed live keys of the first lower tier that has counts
    into ``l1`` (each record passed through ``fit``); returns how many."""
    for tier in lower:
        keys = await tier.hottest(n)
        if not keys:
            continue
        loaded = 0
        for k, rec in zip(keys, await tier.read_many(keys), strict=True):
            if rec is not None:
                l1.set_record(k, fit(rec), rec.tags)
                loaded += 1
        return loaded
    return 0
