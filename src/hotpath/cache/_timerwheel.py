"""A hierarchical timer wheel: O(1) schedule/cancel, amortized O(1) expiry.

Four levels of 64 slots each; a slot of level ``n`` spans ``64**n`` seconds, so the
wheel covers ~194 days at one-second resolution near the present and coarser
further out (later deadlines are parked in the farthest slot and re-filed when it
comes round). Advancing the clock visits only the slots whose tick has changed;
entries of a coarse slot whose deadline is still ahead cascade down to a finer
level. An entry moves at most once per level, so the work per entry is bounded.

The wheel is a plain structure fed times in seconds (the cache passes wall-clock
epoch seconds); it never reads a clock itself. A key is in the wheel at most once:
scheduling it again moves it.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["TimerWheel"]

_BITS = 6
_SLOTS = 1 << _BITS  # 64
_SLOT_MASK = _SLOTS - 1
_LEVELS = 4
#: Seconds per tick of each level: 1 s, 64 s (~1 min), 4096 s (~1.1 h), 262144 s (~3 days).
_TICKS = tuple(float(_SLOTS**n) for n in range(_LEVELS))


class TimerWheel:
    """Deadlines for keys; :meth:`advance` returns the keys whose deadline has passed."""

    __slots__ = ("_now", "_slot_of", "_wheel", "next_tick")

    def __init__(self, now: float) -> None:
        self._now = now
        #: The earliest time at which :meth:`advance` can return anything: callers on a
        #: hot path may skip the call while ``now < next_tick``.
        self.next_tick = float(int(now) + 1)
        self._wheel: list[list[dict[str, float]]] = [
            [{} for _ in range(_SLOTS)] for _ in range(_LEVELS)
        ]
        # key -> the slot dict that holds it, so cancel is one dict pop.
        self._slot_of: dict[str, dict[str, float]] = {}

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, key: str) -> bool:
        return key in self._slot_of

    def __iter__(self) -> Iterator[str]:
        return iter(self._slot_of)

    def schedule(self, key: str, deadline: float) -> None:
        """File ``key`` to expire at ``deadline`` (replacing any earlier schedule)."""
        old = self._slot_of.get(key)
        if old is not None:
            del old[key]
        slot = self._slot_for(deadline)
        slot[key] = deadline
        self._slot_of[key] = slot

    def cancel(self, key: str) -> None:
        """Forget ``key`` (no-op if it is not scheduled)."""
        slot = self._slot_of.pop(key, None)
        if slot is not None:
            del slot[key]

    def clear(self) -> None:
        for level in self._wheel:
            for slot in level:
                slot.clear()
        self._slot_of.clear()

    def advance(self, now: float) -> list[str]:
        """Move time to ``now``; return (and forget) every key whose deadline is <= ``now``.

        Time that goes backwards is ignored. Cheap when no tick boundary was crossed.
        """
        prev = self._now
        if now <= prev:
            return []
        if int(now) == int(prev):
            self._now = now
            return []
        self._now = now
        self.next_tick = float(int(now) + 1)
        expired: list[str] = []
        for level in range(_LEVELS):
            tick = _TICKS[level]
            prev_t = int(prev // tick)
            cur_t = int(now // tick)
            if cur_t == prev_t:
                break  # coarser levels tick even more rarely
            slots = self._wheel[level]
            # Visit every slot from the previous tick to the current one (at most all 64).
            for t in range(prev_t, min(cur_t, prev_t + _SLOT_MASK) + 1):
                i = t & _SLOT_MASK
                bucket = slots[i]
                if not bucket:
                    continue
                slots[i] = {}
                for key, deadline in bucket.items():
                    if deadline <= now:
                        del self._slot_of[key]
                        expired.append(key)
                    else:
                        slot = self._slot_for(deadline)
                        slot[key] = deadline
                        self._slot_of[key] = slot
        return expired

    def _slot_for(self, deadline: float) -> dict[str, float]:
        now = self._now
        for level in range(_LEVELS):
            tick = _TICKS[level]
            t = int(deadline // tick)
            if t - int(now // tick) < _SLOTS:
                return self._wheel[level][t & _SLOT_MASK]
        # Beyond the last level's reach: park it in the farthest slot; it is re-filed
        # when that slot comes round.
        top = _LEVELS - 1
        far = int(now // _TICKS[top]) + _SLOT_MASK
        return self._wheel[top][far & _SLOT_MASK]

    def __repr__(self) -> str:
        return f"TimerWheel(entries={len(self._slot_of)}, now={self._now!r})"
