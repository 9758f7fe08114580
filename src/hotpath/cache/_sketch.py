"""A count-min sketch of 4-bit counters that ages: the frequency half of TinyLFU.

The sketch answers "about how often was this key asked for recently?" in constant
space. Each key maps to one counter in each of two rows; an increment bumps both
(saturating at 15, the 4-bit maximum) and the estimate is the smaller of them, so
collisions can only over-estimate. After ``sample_size`` increments every counter
is halved ("reset"), so the history fades and a key that was hot an hour ago does
not keep its place forever.

Two rows, not the usual four: bumping counters is most of what a cache hit costs
in Python (each bump is several bytecodes). Two rows of 16 counters per cached key
each (32 bytes per key, twice the old four rows of 4) gave the same hit ratios on
the benchmark traces (within ~0.5 point) while the policy's work per hit fell from
~250 to ~205 ns. Both counters of a key lie in one 64-byte block, so a hit
touches one cache line of the table.

Counters are stored one per byte in a ``bytearray`` rather than packed two per
byte: unpacking nibbles costs more Python bytecode on every hit than the memory it
saves. Their range is still 0..15.

Indexes come from the key's ``hash()``. For ``str`` keys that hash is SipHash keyed
with a per-process random seed, so an attacker cannot precompute keys that collide
in the sketch; the admission jitter in the policy covers what is left.
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["FrequencySketch", "Indexes"]

#: The two counter positions of one key, precomputed once per key.
Indexes = tuple[int, int]

_MAX = 15
_M64 = (1 << 64) - 1
_HALVE = bytes(i >> 1 for i in range(256))


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


class FrequencySketch:
    """Approximate, aging access counts for an unbounded key space in fixed memory.

    ``capacity`` is the number of keys the cache holds; each row gets sixteen times
    the next power of two at least that big (32 counters, 32 bytes, per cached key:
    with two rows, half that width lost ~1 point on oltp and sprite @ 200 to
    collisions), and the counters age every ``sample_factor * capacity`` increments.
    """

    __slots__ = ("_additions", "_mask", "_width", "resets", "sample_size", "table")

    def __init__(self, capacity: int, *, sample_factor: int = 10) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        self._width = 16 * _pow2_at_least(max(capacity, 16))  # counters per row
        #: Blocks of 64 counters (32 per row); ``_mask`` picks a block.
        self._mask = 2 * self._width // 64 - 1
        #: The counters. Reset and clear work in place, so a hot loop may keep a
        #: reference and bump counters itself (then call :meth:`added`).
        self.table = bytearray(2 * self._width)
        self.sample_size = max(16, sample_factor * capacity)
        self._additions = 0
        self.resets = 0

    def indexes(self, key: Hashable) -> Indexes:
        """The two counter positions of ``key`` (cache them: hits reuse them).

        Both lie in one 64-byte block (32 counters per row): a hit touches one cache
        line of the table, not one per row. The block and each row's counter come
        from disjoint bits of the hash.
        """
        h = hash(key) & _M64
        base = (h & self._mask) << 6
        h >>= 32
        return (base + (h & 31), base + 32 + ((h >> 5) & 31))

    def increment(self, idx: Indexes) -> None:
        """Count one access of the key at ``idx``; age every counter when a sample is full."""
        t = self.table
        a, b = idx
        if t[a] < _MAX:
            t[a] += 1
        if t[b] < _MAX:
            t[b] += 1
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
        a, b = idx
        return min(t[a], t[b])

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
