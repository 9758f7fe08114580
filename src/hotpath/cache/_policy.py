"""Adaptive W-TinyLFU: which keys an in-memory cache keeps, as a plain state machine.

The policy tracks keys only (no values, no clock, no locks); the memory tier feeds
it events and removes the keys it names. Its parts:

* a **window** LRU (starts at 1% of the capacity) that every new key enters, so a
  burst of new keys can prove itself before it competes for the main space;
* a **main** region, a segmented LRU: *probation* (keys that came out of the
  window, or fell out of protected) and *protected* (keys hit again while in
  probation; 80% of main);
* **TinyLFU admission**: when the window overflows and the cache is full, the
  window's oldest key (the candidate) competes with probation's oldest key (the
  victim) on their estimated frequency (:class:`FrequencySketch`); the loser is
  evicted. A candidate wins only with a strictly higher estimate, which is what
  makes the cache resist scans and loops. To blunt hash flooding (an attacker
  inflating a victim's counters so nothing new ever gets in), a warm candidate
  (estimate > 5) that loses is still admitted 1 time in 128;
* **ghost-driven window sizing** (ARC's adaptation signal, on W-TinyLFU's two
  halves): the policy remembers the last ``ghost * capacity`` keys that lost
  admission (window ghosts) and the last ``ghost * capacity`` victims that main
  gave up (main ghosts), keys only. A miss on a window ghost means a bigger window
  would have kept it, so the window grows; a miss on a main ghost means a bigger
  main would have, so it shrinks. The step is one key, scaled by the ratio of the
  ghost lists' sizes (ARC's rule) and capped at 8 keys, and the window may take
  any share of the cache: recency-friendly streams drift towards LRU,
  frequency-friendly ones towards a 1-key window. The ghost lists are short (10%
  of the capacity each), so a loop longer than the cache returns to a key after
  it has left them and cannot pull the window open; that keeps the loops frozen
  by admission.

Every operation is O(1) (a resize moves at most 8 keys) except :meth:`hottest`.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Iterable

from hotpath.cache._sketch import FrequencySketch, Indexes

__all__ = ["WTinyLFU"]

_INITIAL_WINDOW = 0.01
_PROTECTED = 0.80
_GHOST = 0.10
_MAX_STEP = 8.0  # keys moved per window resize at most: keeps a miss O(1)
_HASHDOS_FREQ = 6


class WTinyLFU:
    """Adaptive W-TinyLFU over ``capacity`` keys.

    Events: :meth:`access` (a hit on a tracked key), :meth:`insert` (a new key;
    returns the keys to evict, possibly the new key itself), :meth:`update` (an
    existing key was rewritten),
    :meth:`remove` (the store dropped a key). :meth:`evict` picks one victim when
    the store needs room for another reason (its byte bound).
    """

    __slots__ = (
        "_capacity",
        "_ghost_cap",
        "_main_cap",
        "_main_ghosts",
        "_probation",
        "_protected",
        "_protected_cap",
        "_random",
        "_size",
        "_window",
        "_window_cap",
        "_window_ghosts",
        "_window_target",
        "adaptive",
        "sketch",
    )

    def __init__(
        self,
        capacity: int,
        *,
        window: float = _INITIAL_WINDOW,
        adaptive: bool = True,
        sample_factor: int = 10,
        ghost: float = _GHOST,
        seed: int | None = None,
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")
        if not 0.0 <= window <= 1.0:
            raise ValueError(f"window must be a fraction in [0, 1], got {window!r}")
        if not 0.0 < ghost <= 1.0:
            raise ValueError(f"ghost must be a fraction in (0, 1], got {ghost!r}")
        self._capacity = capacity
        self.sketch = FrequencySketch(capacity, sample_factor=sample_factor)
        self.adaptive = adaptive
        self._window: OrderedDict[str, Indexes] = OrderedDict()
        self._probation: OrderedDict[str, Indexes] = OrderedDict()
        self._protected: OrderedDict[str, Indexes] = OrderedDict()
        self._size = 0
        self._window_target = capacity * window
        self._window_cap = 0
        self._main_cap = 0
        self._protected_cap = 0
        self._set_caps()
        # Keys only (values None), oldest first; a key is in at most one of them.
        self._window_ghosts: OrderedDict[str, None] = OrderedDict()
        self._main_ghosts: OrderedDict[str, None] = OrderedDict()
        self._ghost_cap = max(1, round(ghost * capacity))
        self._random = random.Random(seed)

    # -- introspection ---------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def window_capacity(self) -> int:
        """How many keys the window LRU may hold now (the rest is main)."""
        return self._window_cap

    def __len__(self) -> int:
        return self._size

    def __contains__(self, key: str) -> bool:
        return key in self._protected or key in self._probation or key in self._window

    def frequency(self, key: str) -> int:
        """The sketch's estimate of how often ``key`` was asked for recently (0..15)."""
        return self.sketch.estimate(self._indexes(key))

    def region(self, key: str) -> str | None:
        """``"window"``, ``"probation"``, ``"protected"`` or ``None`` (for tests and debugging)."""
        if key in self._window:
            return "window"
        if key in self._probation:
            return "probation"
        if key in self._protected:
            return "protected"
        return None

    def hottest(self, n: int) -> list[str]:
        """Up to ``n`` tracked keys by estimated frequency, hottest first (O(size))."""
        if n <= 0:
            return []
        est = self.sketch.estimate
        ranked: list[tuple[int, str]] = []
        for region in (self._protected, self._probation, self._window):
            ranked.extend((est(idx), key) for key, idx in region.items())
        ranked.sort(key=lambda item: item[0], reverse=True)
        return [key for _, key in ranked[:n]]

    # -- events ----------------------------------------------------------------------

    def access(self, key: str) -> None:
        """A lookup hit ``key``: count it and move it up its region."""
        self.access_many((key,))

    def access_many(self, keys: Iterable[str]) -> None:
        """Apply a batch of hits in order (the tier buffers hits and drains them here).

        Keys no longer tracked are skipped. This is the hot loop of the cache, so the
        sketch increment is inlined and the regions' methods are bound once.
        """
        protected = self._protected
        window = self._window
        probation = self._probation
        protected_get = protected.get
        protected_move = protected.move_to_end
        window_get = window.get
        window_move = window.move_to_end
        t = self.sketch.table
        n = 0
        for key in keys:
            idx = protected_get(key)
            if idx is not None:
                protected_move(key)
            else:
                idx = window_get(key)
                if idx is not None:
                    window_move(key)
                else:
                    idx = probation.pop(key, None)
                    if idx is None:
                        continue
                    self._promote(key, idx)
            a, b = idx
            if t[a] < 15:
                t[a] += 1
            if t[b] < 15:
                t[b] += 1
            n += 1
        if n:
            self.sketch.added(n)

    def update(self, key: str) -> None:
        """``key`` was rewritten: count and reorder it like an access, without a hit."""
        idx = self._protected.get(key)
        if idx is not None:
            self._protected.move_to_end(key)
        else:
            idx = self._window.get(key)
            if idx is not None:
                self._window.move_to_end(key)
            else:
                idx = self._probation.pop(key, None)
                if idx is None:
                    return
                self._promote(key, idx)
        self.sketch.increment(idx)

    def insert(self, key: str) -> list[str]:
        """Track a new key (into the window); return the keys the store must evict.

        The list may contain ``key`` itself when it lost admission. Inserting a key
        that is already tracked acts as :meth:`update`.
        """
        if key in self:
            self.update(key)
            return []
        idx = self._indexes(key)
        self.sketch.increment(idx)
        if self.adaptive:
            self._adapt(key)
        self._window[key] = idx
        self._size += 1
        if self._size <= self._capacity and len(self._window) <= self._window_cap:
            return []
        return self._make_room()

    def remove(self, key: str) -> bool:
        """Forget ``key`` (the store deleted or expired it); False if it was not tracked."""
        if (
            self._window.pop(key, None) is None
            and self._probation.pop(key, None) is None
            and self._protected.pop(key, None) is None
        ):
            return False
        self._size -= 1
        return True

    def evict(self) -> str | None:
        """Forget and return one victim (probation's oldest, else window's, else protected's)."""
        for region in (self._probation, self._window, self._protected):
            if region:
                key, _ = region.popitem(last=False)
                self._size -= 1
                return key
        return None

    def add_frequency(self, key: str, count: int) -> None:
        """Credit ``count`` accesses to ``key`` (warming; the counters saturate at 15)."""
        self.sketch.add(self._indexes(key), count)

    def clear(self) -> None:
        self._window_ghosts.clear()
        self._main_ghosts.clear()
        self._window.clear()
        self._probation.clear()
        self._protected.clear()
        self._size = 0
        self.sketch.clear()

    # -- internals -------------------------------------------------------------------

    def _indexes(self, key: str) -> Indexes:
        for region in (self._protected, self._probation, self._window):
            idx = region.get(key)
            if idx is not None:
                return idx
        return self.sketch.indexes(key)

    def _promote(self, key: str, idx: Indexes) -> None:
        protected = self._protected
        protected[key] = idx
        if len(protected) > self._protected_cap:
            demoted, didx = protected.popitem(last=False)
            self._probation[demoted] = didx

    def _make_room(self) -> list[str]:
        window = self._window
        probation = self._probation
        candidate: str | None = None
        while len(window) > self._window_cap:
            key, idx = window.popitem(last=False)
            probation[key] = idx
            if candidate is None:
                candidate = key
        evicted: list[str] = []
        while self._size > self._capacity:
            if candidate is None:
                victim = self.evict()
                if victim is None:  # pragma: no cover - size > capacity implies a key
                    break
                evicted.append(victim)
                continue
            victim = next(iter(probation))
            region = probation
            if victim == candidate:
                if self._protected:
                    victim = next(iter(self._protected))
                    region = self._protected
                elif len(probation) == 1:
                    # Nothing to compete with: the candidate goes (main has no room).
                    del probation[candidate]
                    self._size -= 1
                    evicted.append(candidate)
                    candidate = None
                    continue
            if self._admit(probation[candidate], region[victim]):
                del region[victim]
                evicted.append(victim)
                self._remember(self._main_ghosts, victim)
            else:
                del probation[candidate]
                evicted.append(candidate)
                self._remember(self._window_ghosts, candidate)
                candidate = None
            self._size -= 1
        return evicted

    def _admit(self, candidate: Indexes, victim: Indexes) -> bool:
        est = self.sketch.estimate
        cf = est(candidate)
        vf = est(victim)
        if cf > vf:
            return True
        if cf < _HASHDOS_FREQ:
            return False
        return self._random.getrandbits(7) == 0

    def _set_caps(self) -> None:
        cap = self._capacity
        self._window_target = min(float(cap), max(1.0, self._window_target))
        self._window_cap = min(cap, max(1, round(self._window_target)))
        self._main_cap = cap - self._window_cap
        self._protected_cap = int(self._main_cap * _PROTECTED)

    def _remember(self, ghosts: OrderedDict[str, None], key: str) -> None:
        if not self.adaptive:
            return
        ghosts[key] = None
        if len(ghosts) > self._ghost_cap:
            ghosts.popitem(last=False)

    def _adapt(self, key: str) -> None:
        """A new key arrives: if it was a ghost, move the window towards where it would have hit."""
        window_ghosts, main_ghosts = self._window_ghosts, self._main_ghosts
        if window_ghosts.pop(key, 0) is None:
            step = min(_MAX_STEP, max(1.0, len(main_ghosts) / max(1, len(window_ghosts))))
            self._resize_window(self._window_target + step)
        elif main_ghosts.pop(key, 0) is None:
            step = min(_MAX_STEP, max(1.0, len(window_ghosts) / max(1, len(main_ghosts))))
            self._resize_window(self._window_target - step)

    def _resize_window(self, target: float) -> None:
        self._window_target = target
        self._set_caps()
        window, probation, protected = self._window, self._probation, self._protected
        # Window grew: pull main's oldest keys into it (it now owns that space).
        while len(window) < self._window_cap and (probation or protected):
            source = probation if probation else protected
            key, idx = source.popitem(last=False)
            window[key] = idx
            window.move_to_end(key, last=False)
        # Window shrank: its oldest keys move to main's probation (no eviction: same total).
        while len(window) > self._window_cap:
            key, idx = window.popitem(last=False)
            probation[key] = idx
        while len(protected) > self._protected_cap:
            key, idx = protected.popitem(last=False)
            probation[key] = idx
