"""A count-min sketch of 4-bit counters that ages: the frequency half of TinyLFU.

The sketch answers "about how often was this key asked for recently?" in constant
space. Each key maps to one counter in each of four rows; an increment bumps all
four (saturating at 15, the 4-bit maximum) and the estimate is the smallest of
them, so collisions can only over-estimate. After ``sample_size`` increments every
counter is halved ("reset"), so the history fades and a key that was hot an hour
ago does not keep its place forever.

Counters are stored one per byte in a ``bytearray`` rather than packed two per
byte: unpacking nibbles costs more Python bytecode on every hit than the memory it
saves (4 bytes per cached entry). Their range is still 0..15.

Row indexes come from the key's ``hash()`` by double hashing. For ``str`` keys that
hash is SipHash keyed with a per-process random seed, so an attacker cannot
precompute keys that collide in the sketch; the admission jitter in the policy
covers what is left.
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["FrequencySketch", "Indexes"]

#: The four counter positions of one key, precomputed once per key.
Indexes = tuple[int, int, int, int]

_MAX = 15
_M64 = (1 << 64) - 1
_HALVE = bytes(i >> 1 for i in range(256))


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


class FrequencySketch:
    """Approximate, aging access counts for an unbounded key space in fixed memory.

    ``capacity`` is the number of keys the cache holds; each row gets four times the
    next power of two at least that big (16 counters, 16 bytes, per cached key:
    fewer collisions measurably helped the hit ratio on sprite), and the counters
    age every ``sample_factor * capacity`` increments.
    """

    __slots__ = ("_additions", "_mask", "_width", "resets", "sample_size", "table")

    def __init__(self, capacity: int, *, sample_factor: int = 10) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        self._width = 4 * _pow2_at_least(max(capacity, 16))
        #: Blocks of 64 counters (16 per row); ``_mask`` picks a block.
        self._mask = self._width // 16 - 1
        #: The counters. Reset and clear work in place, so a hot loop may keep a
        #: reference and bump counters itself (then call :meth:`added`).
        self.table = bytearray(4 * self._width)
        self.sample_size = max(16, sample_factor * capacity)
        self._additions = 0
        self.resets = 0

    def indexes(self, key: Hashable) -> Indexes:
        """The four counter positions of ``key`` (cache them: hits reuse them).

        All four lie in one 64-byte block (16 counters per row): a hit touches one
        cache line of the table instead of four, which is most of the sketch's cost
        on a large table. The block and each row's counter come from disjoint bits
        of the hash.
        """
        h = hash(key) & _M64
        base = (h & self._mask) << 6
        h >>= 32
        return (
            base + (h & 15),
            base + 16 + ((h >> 4) & 15),
            base + 32 + ((h >> 8) & 15),
            base + 48 + ((h >> 12) & 15),
        )

    def increment(self, idx: Indexes) -> None:
        """Count one access of the key at ``idx``; age every counter when a sample is full."""
        t = self.table
        a, b, c, d = idx
        if t[a] < _MAX:
            t[a] += 1
        if t[b] < _MAX:
            t[b] += 1
        if t[c] < _MAX:
            t[c] += 1
        if t[d] < _MAX:
            t[d] += 1
        self._additions += 1
        if self._additions >= self.sample_size:
            self.reset()

    def added(self, n: int) -> None:
        """Account ``n`` increments made directly on :attr:`table` (ages when due)."""
        self._additions += n
        if self._additions >= self.sample_size:
            self.reset()

    def add(self, idx: Indexes, count: int) -> None:
        """Count ``count`` accesses at once (used to warm the sketch)."""
        if count <= 0:
            return
        t = self.table
        for i in idx:
            t[i] = min(_MAX, t[i] + count)
        self._additions += min(count, _MAX)
        if self._additions >= self.sample_size:
            self.reset()

    def estimate(self, idx: Indexes) -> int:
        """The estimated recent access count of the key at ``idx`` (0..15)."""
        t = self.table
        a, b, c, d = idx
        return min(t[a], t[b], t[c], t[d])

    def reset(self) -> None:
        """Halve every counter (in C, via ``bytes.translate``): old history fades."""
        self.table[:] = self.table.translate(_HALVE)
        self._additions //= 2
        self.resets += 1

    def clear(self) -> None:
        self.table[:] = bytes(len(self.table))
        self._additions = 0

    def __repr__(self) -> str:
        return f"FrequencySketch(width={self._width}, sample_size={self.sample_size})"
