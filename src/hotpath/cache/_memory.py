"""The in-process (L1) tier: a bounded, thread-safe dict with W-TinyLFU eviction.

``MemoryTier`` holds :class:`~hotpath.cache.Record` objects **by reference**: the
value you ``set`` is the object ``get`` returns, to you and to every other caller.
Never mutate a value you stored or got back; store an immutable value or a copy.

Bounds: at most ``max_entries`` entries and about ``max_bytes`` bytes (``None``:
no byte bound). The byte cost of an entry is the ``size`` its writer passed (the
encoded length, for the tiered cache) or a bounded estimate of the value's size,
plus the key's length and a fixed per-entry overhead. Which entries stay is
decided by :class:`~hotpath.cache._policy.WTinyLFU` (entry count) and, when the
bytes run over, by evicting its next victims.

Expiry: a record's ``expires_at`` is wall-clock epoch seconds read from the
tier's clock. An expired record is never returned; it is dropped when a read
finds it, and a hierarchical timer wheel reclaims the rest in amortized O(1) work
on writes, so expired entries do not hold capacity.

Threads: every method takes one ``threading.Lock`` for a few microseconds at
most; the synchronous API needs no event loop. The async :class:`Tier` methods
run the same code inline (it never blocks on I/O).

L1 is volatile: :meth:`add_hits` feeds the counts into the policy's frequency
sketch (so warmed keys compete better for space) and :meth:`hottest` ranks live
keys by that sketch's estimate; nothing outlives the process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from hotpath._clock import Clock, SystemClock
from hotpath._errors import ConfigError
from hotpath.cache._policy import WTinyLFU
from hotpath.cache._record import Record
from hotpath.cache._stats import TierCounters, TierStats
from hotpath.cache._tier import Tier, WriteItem
from hotpath.cache._timerwheel import TimerWheel
from hotpath.cache._urls import parse_int, parse_options, parse_size
from hotpath.cache._validate import check_count, check_key, check_tags, check_ttl

if TYPE_CHECKING:
    from hotpath.cache._codec import Codec

__all__ = ["ENTRY_OVERHEAD", "MemoryTier", "estimate_size"]

#: Bytes charged per entry on top of its value: dict slot, policy node, record, key.
ENTRY_OVERHEAD = 256

_SAMPLE_MASK = 63  # time 1 write in 64
_SAMPLE_ITEMS = 16  # items of a container measured by estimate_size
_READ_BUFFER = 64  # hits buffered before they are applied to the policy
_perf = time.perf_counter

# (record, charged bytes, tags, record.value, record.expires_at): the last two are
# copies so a hit reads them with one tuple index each instead of an attribute load.
_Entry = tuple[Record, int, tuple[str, ...], object, float | None]


def estimate_size(value: object, budget: int = 256) -> int:
    """A fast, bounded estimate of ``value``'s memory in bytes.

    Knows str/bytes/int/float/bool/None and list/tuple/set/dict. A container's
    first 16 items are measured and the rest extrapolated from them; at most
    ``budget`` objects are visited in all (beyond that, and for other types, an
    object is charged a flat 64 bytes).
    """
    t = type(value)
    if t is str or t is bytes:
        return 49 + len(value)  # type: ignore[arg-type]
    if value is None or t is int or t is float or t is bool:
        return 28
    return _estimate(value, [budget])


def _estimate(obj: object, budget: list[int]) -> int:
    budget[0] -= 1
    t = type(obj)
    if t is str or t is bytes or t is bytearray:
        return 49 + len(obj)  # type: ignore[arg-type]
    if obj is None or t is int or t is float or t is bool:
        return 28
    if t is dict:
        d: dict[object, object] = obj  # type: ignore[assignment]
        n = len(d)
        size = 64 + 24 * n
        if not n:
            return size
        if budget[0] <= 0:
            return size + 128 * n
        measured = 0
        total = 0
        for k, v in d.items():
            total += _estimate(k, budget) + _estimate(v, budget)
            measured += 1
            if measured == _SAMPLE_ITEMS:
                break
        return size + total * n // measured
    if t is list or t is tuple or t is set or t is frozenset:
        seq: list[object] = obj  # type: ignore[assignment]
        n = len(seq)
        size = 56 + 8 * n
        if not n:
            return size
        if budget[0] <= 0:
            return size + 64 * n
        measured = 0
        total = 0
        for item in seq:
            total += _estimate(item, budget)
            measured += 1
            if measured == _SAMPLE_ITEMS:
                break
        return size + total * n // measured
    return 64


def _max_bytes(text: str, name: str) -> int | None:
    return None if text.strip().lower() == "none" else parse_size(text, name)


class MemoryTier(Tier):
    """A bounded in-memory tier (L1). See the module docstring for the contract."""

    name = "memory"

    def __init__(
        self,
        *,
        max_entries: int = 100_000,
        max_bytes: int | None = 256_000_000,
        clock: Clock | None = None,
    ) -> None:
        self._max_entries = check_count(max_entries, "max_entries")
        self._max_bytes = None if max_bytes is None else check_count(max_bytes, "max_bytes")
        self._clock: Clock = clock if clock is not None else SystemClock()
        # SystemClock.now is time.time behind a Python call; skip that frame on reads.
        self._now = time.time if type(self._clock) is SystemClock else self._clock.now
        self._lock = threading.Lock()
        self._data: dict[str, _Entry] = {}
        self._policy = WTinyLFU(max_entries)
        self._wheel = TimerWheel(self._now())
        self._tags: dict[str, set[str]] = {}
        self._bytes = 0
        self._ops = 0
        self._reads: list[str] = []
        self._counters = TierCounters()

    @classmethod
    def from_url(
        cls, url: str, *, clock: Clock | None = None, codec: Codec | None = None
    ) -> MemoryTier:
        """``memory://?max_entries=100000&max_bytes=256MB`` (``max_bytes=none``: unbounded).

        ``codec`` is accepted for symmetry with the other tiers and ignored: L1 keeps
        objects, not bytes.
        """
        parts = urlsplit(url)
        if parts.scheme.lower() != "memory":
            raise ConfigError(f"a memory tier URL must start with memory://, got {url!r}")
        if parts.netloc or parts.path not in ("", "/"):
            raise ConfigError(
                f"a memory tier URL takes no host or path, got "
                f"{parts.netloc + parts.path!r} in {url!r}"
            )
        kwargs = parse_options(url, {"max_entries": parse_int, "max_bytes": _max_bytes})
        return cls(clock=clock, **kwargs)

    def __repr__(self) -> str:
        return (
            f"MemoryTier(max_entries={self._max_entries!r}, max_bytes={self._max_bytes!r}, "
            f"entries={len(self._data)}, bytes={self._bytes})"
        )

    @property
    def max_entries(self) -> int:
        return self._max_entries

    @property
    def max_bytes(self) -> int | None:
        return self._max_bytes

    @property
    def policy(self) -> WTinyLFU:
        """The eviction policy (read-only use: inspecting it is not thread-safe)."""
        return self._policy

    # -- public synchronous API ------------------------------------------------------

    def get(self, key: str | bytes, default: object = None) -> object:
        """The value stored under ``key``, or ``default`` if absent or expired."""
        if type(key) is not str:
            key = check_key(key)
        # The lock-free hit path of get_record, inlined: this is the hottest call.
        reads = self._reads
        if reads:
            entry = self._data.get(key)
            if entry is not None:
                exp = entry[4]
                if exp is None or exp > self._now():
                    reads.append(key)
                    if len(reads) >= _READ_BUFFER:
                        self._drain_reads()
                    return entry[3]
            rec2 = self._get_locked(key, 0.0)
        else:
            rec2 = self._get_locked(key, _perf())
        return default if rec2 is None else rec2.value

    def set(
        self,
        key: str | bytes,
        value: object,
        ttl: float | None = None,
        tags: Iterable[str | bytes] | None = None,
    ) -> None:
        """Store ``value`` (by reference) for ``ttl`` seconds (``None``: no expiry)."""
        k = check_key(key)
        seconds = check_ttl(ttl)
        tag_tuple = check_tags(tags)
        expires_at = None if seconds is None else self._now() + seconds
        self.set_record(k, Record(value, expires_at), tag_tuple)

    def delete(self, key: str | bytes) -> bool:
        """Remove ``key``; True if it was there."""
        k = check_key(key)
        with self._lock:
            entry = self._data.get(k)
            if entry is None:
                return False
            self._drop(k, entry)
            self._counters.deletes += 1
            return not entry[0].expired(self._now())

    def __len__(self) -> int:
        """Entries held, including expired ones not yet reclaimed."""
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        """True if ``key`` holds a live value (no effect on stats or eviction order)."""
        return self.peek_record(check_key(key)) is not None

    # -- record-level API for the tiered cache (keys already validated) ---------------

    def get_record(self, key: str) -> Record | None:
        """The live record for ``key`` (counts a hit or miss; drops it if expired).

        A hit takes no lock: it reads the dict (atomic under the GIL) and appends the
        key to a read buffer that is applied to the policy, under the lock, every
        64 hits and before every write. A buffer swapped out while another thread
        appends to it may lose that one access (the policy's view is a sample).
        """
        reads = self._reads
        if reads:
            entry = self._data.get(key)
            if entry is not None:
                exp = entry[4]
                if exp is None or exp > self._now():
                    reads.append(key)
                    if len(reads) >= _READ_BUFFER:
                        self._drain_reads()
                    return entry[0]
            return self._get_locked(key, 0.0)
        # The first lookup after a drain is timed (1 in 64 when hits dominate).
        return self._get_locked(key, _perf())

    def _get_locked(self, key: str, t0: float) -> Record | None:
        lock = self._lock
        lock.acquire()
        try:
            entry = self._data.get(key)
            rec: Record | None
            if entry is None:
                self._counters.misses += 1
                rec = None
            else:
                rec = entry[0]
                if rec.expired(self._now()):
                    self._drop(key, entry)
                    self._counters.expirations += 1
                    self._counters.misses += 1
                    rec = None
                else:
                    self._reads.append(key)
            if t0:
                self._counters.latency.record(_perf() - t0)
            return rec
        finally:
            lock.release()

    def _drain_reads(self) -> None:
        """Apply buffered hits to the policy and the hit counter."""
        with self._lock:
            self._drain_locked()

    def _drain_locked(self) -> None:
        reads = self._reads
        if reads:
            self._reads = []
            self._counters.hits += len(reads)
            self._policy.access_many(reads)

    def peek_record(self, key: str) -> Record | None:
        """The live record for ``key`` without counting it or reordering anything."""
        entry = self._data.get(key)
        if entry is None:
            return None
        rec = entry[0]
        return None if rec.expired(self._now()) else rec

    def set_record(
        self, key: str, record: Record, tags: tuple[str, ...] = (), size: int | None = None
    ) -> None:
        """Store ``record`` under ``key`` (replacing), indexed under ``tags``.

        ``size`` is the value's byte cost if the caller knows it (e.g. its encoded
        length); otherwise it is estimated. A record that has already expired, or
        that alone exceeds ``max_bytes``, is not stored (and the old entry goes).
        """
        if size is None:
            size = estimate_size(record.value)
        charge = size + len(key) + ENTRY_OVERHEAD
        lock = self._lock
        lock.acquire()
        try:
            n = self._ops = self._ops + 1
            t0 = 0.0 if n & _SAMPLE_MASK else _perf()
            if self._reads:
                self._drain_locked()
            now = self._now()
            self._reclaim(now)
            counters = self._counters
            counters.sets += 1
            data = self._data
            old = data.get(key)
            exp = record.expires_at
            if (exp is not None and exp <= now) or (
                self._max_bytes is not None and charge > self._max_bytes
            ):
                if old is not None:
                    self._drop(key, old)
                return
            data[key] = (record, charge, tags, record.value, exp)
            if old is None:
                self._bytes += charge
                if tags:
                    self._index(key, tags)
                evicted = self._policy.insert(key)
                if evicted:
                    for victim in evicted:
                        self._forget(victim)
                    counters.evictions += len(evicted)
            else:
                self._bytes += charge - old[1]
                if old[2] != tags:
                    if old[2]:
                        self._unindex(key, old[2])
                    if tags:
                        self._index(key, tags)
                self._policy.update(key)
            if exp is not None:
                if key in data:
                    self._wheel.schedule(key, exp)
            elif old is not None and old[0].expires_at is not None:
                self._wheel.cancel(key)
            if self._max_bytes is not None and self._bytes > self._max_bytes:
                self._shed_bytes()
            if t0:
                counters.latency.record(_perf() - t0)
        finally:
            lock.release()

    def remove(self, key: str) -> None:
        """Drop ``key`` if present."""
        with self._lock:
            entry = self._data.get(key)
            if entry is not None:
                self._drop(key, entry)
                self._counters.deletes += 1

    def remove_keys(self, keys: Iterable[str]) -> None:
        """Drop every key of ``keys`` that is present."""
        with self._lock:
            data = self._data
            for key in keys:
                entry = data.get(key)
                if entry is not None:
                    self._drop(key, entry)
                    self._counters.deletes += 1

    def remove_tags_sync(self, tags: Sequence[str]) -> None:
        """Drop every entry indexed under any of ``tags`` (work proportional to them)."""
        with self._lock:
            for tag in tags:
                keys = self._tags.get(tag)
                if not keys:
                    continue
                for key in list(keys):
                    entry = self._data.get(key)
                    if entry is not None:
                        self._drop(key, entry)
                        self._counters.deletes += 1

    def clear_sync(self) -> None:
        """Drop every entry (the frequency history goes too)."""
        with self._lock:
            self._reads = []
            self._data.clear()
            self._tags.clear()
            self._wheel.clear()
            self._policy.clear()
            self._bytes = 0

    def ttl_of(self, key: str) -> float | None:
        """Seconds ``key`` has left to live; ``None`` if absent, expired or without expiry."""
        entry = self._data.get(key)
        if entry is None:
            return None
        left = entry[0].ttl(self._now())
        return None if left is None or left <= 0 else left

    # -- the async Tier interface ----------------------------------------------------

    async def read_many(self, keys: Sequence[str]) -> list[Record | None]:
        get = self.get_record
        return [get(k) for k in keys]

    async def write_many(self, items: Sequence[WriteItem], *, only_missing: bool = False) -> None:
        for key, record, tags in items:
            if only_missing and self.peek_record(key) is not None:
                continue
            self.set_record(key, record, tags)

    async def remove_many(self, keys: Sequence[str]) -> None:
        self.remove_keys(keys)

    async def remove_tags(self, tags: Sequence[str]) -> None:
        self.remove_tags_sync(tags)

    async def clear(self) -> None:
        self.clear_sync()

    async def add_hits(self, counts: Mapping[str, int]) -> None:
        """Credit access counts to live keys' frequency estimates (not persisted)."""
        with self._lock:
            for key, count in counts.items():
                if key in self._data:
                    self._policy.add_frequency(key, count)

    async def hottest(self, n: int) -> list[str]:
        """Up to ``n`` live keys by the policy's frequency estimate, hottest first."""
        with self._lock:
            self._drain_locked()
            now = self._now()
            keys = self._policy.hottest(len(self._data))
            out = []
            for key in keys:
                entry = self._data.get(key)
                if entry is not None and not entry[0].expired(now):
                    out.append(key)
                    if len(out) >= n:
                        break
            return out

    def stats(self) -> TierStats:
        with self._lock:
            self._drain_locked()
            return self._counters.snapshot(
                self.name, healthy=True, entries=len(self._data), nbytes=self._bytes
            )

    @property
    def healthy(self) -> bool:
        return True

    async def aclose(self) -> None:
        self.clear_sync()

    # -- internals (the caller holds the lock) ---------------------------------------

    def _drop(self, key: str, entry: _Entry) -> None:
        """Remove a present entry from the store, the policy, the wheel and the tag index."""
        self._forget_entry(key, entry)
        self._policy.remove(key)

    def _forget(self, key: str) -> None:
        """Remove a key the policy already let go of."""
        entry = self._data.get(key)
        if entry is not None:
            self._forget_entry(key, entry)

    def _forget_entry(self, key: str, entry: _Entry) -> None:
        del self._data[key]
        self._bytes -= entry[1]
        if entry[2]:
            self._unindex(key, entry[2])
        if entry[0].expires_at is not None:
            self._wheel.cancel(key)

    def _index(self, key: str, tags: tuple[str, ...]) -> None:
        index = self._tags
        for tag in tags:
            keys = index.get(tag)
            if keys is None:
                index[tag] = {key}
            else:
                keys.add(key)

    def _unindex(self, key: str, tags: tuple[str, ...]) -> None:
        index = self._tags
        for tag in tags:
            keys = index.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del index[tag]

    def _reclaim(self, now: float) -> None:
        """Drop entries whose deadline passed (the wheel only visits ticks that changed)."""
        if now < self._wheel.next_tick:
            return
        expired = self._wheel.advance(now)
        if expired:
            data = self._data
            for key in expired:
                entry = data.get(key)
                if entry is not None:
                    self._drop(key, entry)  # the wheel already forgot it: cancel is a no-op
            self._counters.expirations += len(expired)

    def _shed_bytes(self) -> None:
        policy = self._policy
        evictions = 0
        limit = self._max_bytes if self._max_bytes is not None else self._bytes
        while self._bytes > limit:
            victim = policy.evict()
            if victim is None:
                break
            self._forget(victim)
            evictions += 1
        self._counters.evictions += evictions
