"""TieredCache: memory (L1) -> Redis (L2) -> SQLite (L3), composed.

Reads go down the tiers until one has the key, and the record is promoted to
every tier above with its remaining TTL (and its tags). Writes go to every tier,
lowest first, so a concurrent reader never finds an upper tier newer than a
lower one for long. ``get_or_load`` adds single-flight (one loader per key per
process, and one per cluster of replicas through a Redis lease), probabilistic
early refresh, and access counting for warming. With a Redis tier present, every
write, delete and tag invalidation is published so that other processes drop the
stale entry from their L1.

A tier's backend fault never reaches the caller: tiers degrade to misses/no-ops
on their own (see :class:`~hotpath.cache.Tier`); this class never sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from hotpath._clock import Clock, SystemClock
from hotpath._errors import CacheError, ConfigError
from hotpath.cache._codec import Codec
from hotpath.cache._coherence import Coherence
from hotpath.cache._memory import MemoryTier
from hotpath.cache._portal import Portal
from hotpath.cache._record import Record
from hotpath.cache._redis import RedisTier
from hotpath.cache._refresh import should_refresh
from hotpath.cache._stats import CacheStats
from hotpath.cache._tier import Tier
from hotpath.cache._urls import tier_from_url
from hotpath.cache._validate import (
    check_key,
    check_non_negative,
    check_positive,
    check_tags,
    check_ttl,
)
from hotpath.cache._warming import AccessCounts, warm

__all__ = ["CacheEvent", "TieredCache"]

log = logging.getLogger("hotpath.cache")

T = TypeVar("T")
_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class CacheEvent:
    """What a hook receives: ``kind`` is ``hit``, ``miss``, ``load``, ``load_error``,
    ``refresh`` or ``invalidation``; ``tier`` names the tier of a hit."""

    kind: str
    key: str
    tier: str | None = None
    seconds: float = 0.0


Hook = Callable[[CacheEvent], None]


@dataclass(frozen=True, slots=True)
class _Load:
    """One load of ``key``: what to run, how to store it, and whether it is an early
    refresh (which nobody waits for) rather than a miss."""

    key: str
    loader: Callable[[], Awaitable[Any]]
    ttl: float | None
    tags: tuple[str, ...]
    refresh: bool = False


class TieredCache:
    """A cache over ordered tiers, fastest first.

    ``tiers`` are :class:`Tier` objects or URLs (``memory://?max_entries=10000``,
    ``redis://127.0.0.1:6379/0``, ``sqlite:///.hotpath/cache.db``). A memory tier,
    if present, must come first. ``default_ttl`` applies when a call gives none
    (``None``: entries never expire). ``l1_max_ttl`` caps how long an entry stays in
    L1, bounding staleness should an invalidation message ever be lost.
    ``lock_lease`` is the lease a replica takes on a key it loads (renewed while the
    loader runs, so it only runs out if that replica dies); ``lock_wait`` is how long
    the others wait for its result before loading themselves. ``refresh_beta`` tunes
    early refresh (0 turns it off).
    """

    def __init__(
        self,
        tiers: Sequence[Tier | str] = ("memory://",),
        *,
        default_ttl: float | None = None,
        l1_max_ttl: float | None = None,
        coherence: bool = True,
        lock_lease: float = 10.0,
        lock_wait: float = 300.0,
        refresh_beta: float = 1.0,
        hits_flush_interval: float = 10.0,
        clock: Clock | None = None,
        codec: Codec | None = None,
        rand: Callable[[], float] | None = None,
    ) -> None:
        self._clock = clock or SystemClock()
        self._codec = codec or Codec()
        if isinstance(tiers, str | Tier) or not isinstance(tiers, Sequence):
            raise ConfigError(f"tiers must be a list of tiers or tier URLs, got {tiers!r}")
        if not tiers:
            raise ConfigError("tiers must name at least one tier, got []")
        built: list[Tier] = []
        for i, t in enumerate(tiers):
            if isinstance(t, str):
                built.append(tier_from_url(t, clock=self._clock, codec=self._codec))
            elif isinstance(t, Tier):
                built.append(t)
            else:
                raise ConfigError(f"tiers[{i}] must be a Tier or a URL, got {t!r}")
        for i, t in enumerate(built[1:], 1):
            if isinstance(t, MemoryTier):
                raise ConfigError(f"tiers[{i}] is a memory tier: only the first tier may be")
        self._tiers = tuple(built)
        self._l1: MemoryTier | None = built[0] if isinstance(built[0], MemoryTier) else None
        self._lower: tuple[Tier, ...] = tuple(built[1:] if self._l1 is not None else built)
        self._redis = next((t for t in self._lower if isinstance(t, RedisTier)), None)
        self._default_ttl = check_ttl(default_ttl, "default_ttl")
        self._l1_max_ttl = check_ttl(l1_max_ttl, "l1_max_ttl")
        self._lock_lease = check_positive(lock_lease, "lock_lease")
        self._lock_wait = check_positive(lock_wait, "lock_wait")
        self._beta = check_non_negative(refresh_beta, "refresh_beta")
        flush_interval = check_positive(hits_flush_interval, "hits_flush_interval")
        self._rand = rand or random.random
        self._hooks: list[Hook] = []
        # single-flight: (event loop, key) -> the task loading it
        self._flights: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Task[Any]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._portal = Portal()
        self._closed = False
        self._hits = self._misses = self._loads = self._load_errors = 0
        self._coalesced = self._refreshes = 0
        self._coherence = (
            Coherence(self._redis, self._l1, on_keys=self._on_remote_keys)
            if coherence and self._redis is not None
            else None
        )
        self._origin = self._coherence.origin if self._coherence else uuid.uuid4().hex
        self._counts = AccessCounts(self._lower, self._clock, flush_interval, self._schedule_flush)

    @classmethod
    def from_urls(cls, *urls: str, **options: Any) -> TieredCache:
        """``TieredCache.from_urls("memory://", "sqlite:///c.db", default_ttl=60)``."""
        return cls(list(urls), **options)

    def __repr__(self) -> str:
        names = ", ".join(t.name for t in self._tiers)
        return f"TieredCache([{names}], default_ttl={self._default_ttl!r})"

    @property
    def tiers(self) -> tuple[Tier, ...]:
        return self._tiers

    # -- lifecycle --------------------------------------------------------------

    async def __aenter__(self) -> TieredCache:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Subscribe to invalidations now (otherwise the first call does it)."""
        if self._coherence is not None:
            await self._coherence.wait_subscribed(1.0)

    async def aclose(self) -> None:
        """Flush access counts, stop background work and release every tier."""
        if self._closed:
            return
        self._closed = True
        await self._counts.flush()
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(BaseException):
                await task
        if self._coherence is not None:
            await self._coherence.aclose()
        for tier in self._tiers:
            # closes this loop's connections and schedules the close of the portal's
            await tier.aclose()
        self._portal.close()

    def add_hook(self, hook: Hook) -> None:
        """Call ``hook(CacheEvent)`` on every hit, miss, load and refresh (keep it fast)."""
        if not callable(hook):
            raise ConfigError(f"hook must be callable, got {hook!r}")
        self._hooks.append(hook)

    # -- reads ------------------------------------------------------------------

    async def get(self, key: str | bytes, default: Any = None) -> Any:
        """The cached value of ``key``, or ``default``."""
        k = key if type(key) is str else check_key(key)
        found = await self.lookup(k)
        return default if found is None else found[0].value

    async def get_many(self, keys: Iterable[str | bytes], default: Any = None) -> list[Any]:
        """Values for ``keys`` in order (``default`` for misses), batched per tier."""
        ks = [check_key(k, f"keys[{i}]") for i, k in enumerate(keys)]
        found: dict[str, Record] = {}
        todo = ks
        if self._l1 is not None:
            todo = []
            for k in ks:
                rec = self._l1.get_record(k)
                if rec is None:
                    todo.append(k)
                else:
                    found[k] = rec
                    self._hit(k, "memory")
        epoch = self._epoch()
        above: list[Tier] = [self._l1] if self._l1 is not None else []
        for tier in self._lower:
            if not todo:
                break
            records = await tier.read_many(todo)
            still: list[str] = []
            promote: list[tuple[str, Record]] = []
            for k, rec in zip(todo, records, strict=True):
                if rec is None:
                    still.append(k)
                else:
                    found[k] = rec
                    promote.append((k, rec))
                    self._hit(k, tier.name)
            await self._promote(promote, above, epoch)
            above.append(tier)
            todo = still
        for k in todo:
            self._miss(k)
        return [found[k].value if k in found else default for k in ks]

    async def lookup(self, key: str | bytes) -> tuple[Record, str] | None:
        """The record of ``key`` and the name of the tier that held it (``memory``,
        ``redis``, ``sqlite``), or ``None`` on a miss. Counts as a ``get``."""
        k = key if type(key) is str else check_key(key)
        l1 = self._l1
        if l1 is not None:
            rec = l1.get_record(k)
            if rec is not None:
                self._hits += 1
                self._counts.count(k)
                if self._hooks:
                    self._emit(CacheEvent("hit", k, "memory"))
                return rec, "memory"
        if not self._lower:
            self._miss(k)
            return None
        self._subscribe()
        rec, tier_name = await self._read_lower(k)
        if rec is None:
            self._miss(k)
            return None
        self._hit(k, tier_name)
        return rec, tier_name

    async def _promote(
        self, items: list[tuple[str, Record]], tiers: list[Tier], epoch: int
    ) -> None:
        """Copy records read from a lower tier into ``tiers`` above it.

        A promotion must not resurrect a value that another process replaced while
        we were reading it: shared tiers only take a record where the key is absent
        (``only_missing``), and L1 takes none if an invalidation arrived since
        ``epoch`` (see :attr:`Coherence.epoch`) when the read started.
        """
        if not items:
            return
        for tier in tiers:
            if tier is self._l1:
                if self._coherence is not None and self._coherence.epoch != epoch:
                    continue
                for k, rec in items:
                    self._l1.set_record(k, self._l1_record(rec), rec.tags)
            else:
                await tier.write_many([(k, rec, rec.tags) for k, rec in items], only_missing=True)

    def _epoch(self) -> int:
        return self._coherence.epoch if self._coherence is not None else 0

    def _l1_record(self, rec: Record) -> Record:
        cap = self._l1_max_ttl
        if cap is None:
            return rec
        limit = self._clock.now() + cap
        if rec.expires_at is not None and rec.expires_at <= limit:
            return rec
        return Record(rec.value, limit, rec.delta, rec.tags)

    # -- writes -----------------------------------------------------------------

    async def set(
        self,
        key: str | bytes,
        value: Any,
        ttl: float | None = None,
        tags: Iterable[str] | None = None,
    ) -> None:
        """Store ``value`` in every tier for ``ttl`` seconds (default: ``default_ttl``)."""
        k = check_key(key)
        rec = Record(value, self._expiry(check_ttl(ttl)), 0.0, check_tags(tags))
        await self._store([(k, rec)])

    async def set_many(
        self,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        ttl: float | None = None,
        tags: Iterable[str] | None = None,
    ) -> None:
        """Store several values with one TTL and tag set, batched per tier."""
        pairs = items.items() if isinstance(items, Mapping) else items
        expires = self._expiry(check_ttl(ttl))
        tag_tuple = check_tags(tags)
        batch = [(check_key(k, "items key"), Record(v, expires, 0.0, tag_tuple)) for k, v in pairs]
        await self._store(batch)

    async def delete(self, key: str | bytes) -> None:
        """Remove ``key`` from every tier (and from other processes' L1)."""
        k = check_key(key)
        await self._remove([k])

    async def delete_many(self, keys: Iterable[str | bytes]) -> None:
        ks = [check_key(k, f"keys[{i}]") for i, k in enumerate(keys)]
        await self._remove(ks)

    async def invalidate_tags(self, tags: Iterable[str]) -> None:
        """Remove every entry stored with any of ``tags``, in every tier and process."""
        ts = check_tags(tags)
        if not ts:
            return
        self._subscribe()
        for tier in reversed(self._lower):
            await tier.remove_tags(ts)
        if self._l1 is not None:
            self._l1.remove_tags_sync(ts)
        await self._publish(tags=ts)

    async def clear(self) -> None:
        """Remove every entry from every tier (and other processes' L1)."""
        self._subscribe()
        for tier in reversed(self._lower):
            await tier.clear()
        if self._l1 is not None:
            self._l1.clear_sync()
        await self._publish(clear=True)

    def _expiry(self, ttl: float | None) -> float | None:
        ttl = ttl if ttl is not None else self._default_ttl
        return None if ttl is None else self._clock.now() + ttl

    async def _store(self, batch: list[tuple[str, Record]]) -> None:
        if not batch:
            return
        self._subscribe()
        items = [(k, rec, rec.tags) for k, rec in batch]
        # Lowest tier first. Each tier encodes a whole batch before any I/O, so an
        # unencodable value raises from the first one, before anything is written.
        for tier in reversed(self._lower):
            await tier.write_many(items)
        if self._l1 is not None:
            for k, rec in batch:
                self._l1.set_record(k, self._l1_record(rec), rec.tags)
        await self._publish(keys=tuple(k for k, _ in batch))

    async def _remove(self, keys: list[str]) -> None:
        if not keys:
            return
        self._subscribe()
        for tier in reversed(self._lower):
            await tier.remove_many(keys)
        if self._l1 is not None:
            self._l1.remove_keys(keys)
        await self._publish(keys=tuple(keys))

    # -- get_or_load ------------------------------------------------------------

    async def get_or_load(
        self,
        key: str | bytes,
        loader: Callable[[], Awaitable[T]],
        ttl: float | None = None,
        tags: Iterable[str] | None = None,
    ) -> T:
        """The cached value of ``key``, loading it with ``await loader()`` on a miss.

        Concurrent callers for one missing key share a single ``loader`` call in
        this process; with a Redis tier, replicas share it through a short lease.
        A hit close to expiry may start a background reload (early refresh). A
        loader's exception reaches every caller waiting on it and nothing is cached.
        """
        k = key if type(key) is str else check_key(key)
        if not callable(loader):
            raise CacheError(f"loader must be a zero-argument callable, got {loader!r}")
        return await self._get_or_load(k, loader, check_ttl(ttl), check_tags(tags))

    async def _get_or_load(
        self,
        k: str,
        loader: Callable[[], Awaitable[T]],
        ttl_s: float | None,
        tag_tuple: tuple[str, ...],
    ) -> T:
        """``get_or_load`` with its arguments already checked (``@cached`` checks once)."""
        found = await self.lookup(k)
        if found is not None:
            rec = found[0]
            if self._beta and should_refresh(rec, self._clock.now(), self._beta, self._rand):
                self._refresh_in_background(_Load(k, loader, ttl_s, tag_tuple, refresh=True))
            return rec.value  # type: ignore[return-value]
        loop = asyncio.get_running_loop()
        task = self._flights.get((loop, k))
        if task is None:
            task = loop.create_task(self._load(_Load(k, loader, ttl_s, tag_tuple)))
            self._flights[(loop, k)] = task
            task.add_done_callback(lambda t: self._flight_done(loop, k, t))
        else:
            self._coalesced += 1
        result: T = await asyncio.shield(task)
        return result

    def _flight_done(
        self, loop: asyncio.AbstractEventLoop, k: str, task: asyncio.Task[Any]
    ) -> None:
        if self._flights.get((loop, k)) is task:
            del self._flights[(loop, k)]
        if not task.cancelled():
            task.exception()  # mark retrieved: callers that awaited it got it already

    def _refresh_in_background(self, job: _Load) -> None:
        loop = asyncio.get_running_loop()
        k = job.key
        if (loop, k) in self._flights:
            return
        task = loop.create_task(self._load(job))
        self._flights[(loop, k)] = task
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(lambda t: self._flight_done(loop, k, t))

    async def _load(self, job: _Load) -> Any:
        redis = self._redis
        if redis is None:
            return await self._run_loader(job)
        token = self._origin + uuid.uuid4().hex[:8]
        deadline = self._clock.monotonic() + self._lock_wait
        while True:
            got = await redis.try_lock(job.key, token, self._lock_lease)
            if got is None:  # Redis unavailable: load locally
                return await self._run_loader(job)
            if got:
                return await self._run_leased(redis, token, job)
            if job.refresh:  # another replica refreshes; callers keep the current value
                return None
            # Another replica is loading: wait for it to publish the key.
            self._coalesced += 1
            value = await self._await_other_replica(job.key, redis, deadline)
            if value is not _MISSING:
                return value
            if self._clock.monotonic() >= deadline:
                log.warning("gave up waiting for another replica to load %r; loading here", job.key)
                return await self._run_loader(job)

    async def _run_leased(self, redis: RedisTier, token: str, job: _Load) -> Any:
        """Run the loader while holding the replicas' lease on the key, renewing it every
        third of ``lock_lease`` so that a slow load (an LLM call of a minute) keeps the
        other replicas waiting instead of loading too."""
        renew = asyncio.get_running_loop().create_task(self._renew_lease(redis, job.key, token))
        try:
            if not job.refresh:
                # Double-check under the lease: our miss may have been read while an
                # earlier load (here or on another replica) was storing the value.
                rec, _ = await self._read_lower(job.key)
                if rec is not None:
                    return rec.value
            return await self._run_loader(job)
        finally:
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renew
            await redis.unlock(job.key, token)

    async def _renew_lease(self, redis: RedisTier, k: str, token: str) -> None:
        while True:
            await asyncio.sleep(self._lock_lease / 3)
            if await redis.extend_lock(k, token, self._lock_lease) is False:
                log.warning("the load lease of %r was lost; another replica may load it too", k)
                return

    async def _await_other_replica(self, k: str, redis: RedisTier, deadline: float) -> Any:
        """The value once another replica stored it; ``_MISSING`` if its lease ended
        (it failed, or died) or ``deadline`` passed first."""
        wait = 0.005
        coherence = self._coherence
        while self._clock.monotonic() < deadline:
            # Watch before reading, so a message landing in between still wakes us;
            # polling (growing to 0.2 s) is the fallback when there is no channel.
            fut = coherence.watch(k) if coherence is not None else None
            try:
                rec, _ = await self._read_lower(k)
                if rec is not None:
                    return rec.value
                if not await redis.is_locked(k):
                    # The lease is gone: the value landed just before it, or never will.
                    rec, _ = await self._read_lower(k)
                    return _MISSING if rec is None else rec.value
                with contextlib.suppress(TimeoutError):
                    if fut is not None:
                        await asyncio.wait_for(fut, wait)
                    else:
                        await asyncio.sleep(wait)
            finally:
                if fut is not None and coherence is not None:
                    coherence.unwatch(k, fut)
            wait = min(wait * 2, 0.2)
        return _MISSING

    async def _read_lower(self, k: str) -> tuple[Record | None, str]:
        """``k``'s record from the first lower tier that has it (promoted to the tiers
        above), and that tier's name."""
        epoch = self._epoch()
        above: list[Tier] = [self._l1] if self._l1 is not None else []
        for tier in self._lower:
            rec = await tier.read(k)
            if rec is not None:
                await self._promote([(k, rec)], above, epoch)
                return rec, tier.name
            above.append(tier)
        return None, ""

    async def _run_loader(self, job: _Load) -> Any:
        k = job.key
        started = self._clock.monotonic()
        try:
            awaitable = job.loader()
            if not inspect.isawaitable(awaitable):
                raise CacheError(
                    f"loader for key {k!r} must return an awaitable, got {type(awaitable).__name__}"
                )
            value = await awaitable
        except BaseException as exc:
            if isinstance(exc, Exception):
                self._load_errors += 1
                if self._hooks:
                    self._emit(CacheEvent("load_error", k))
                if job.refresh:
                    log.warning("early refresh of %r failed: %s", k, exc)
            raise
        delta = self._clock.monotonic() - started
        await self._store([(k, Record(value, self._expiry(job.ttl), delta, job.tags))])
        if job.refresh:
            self._refreshes += 1
        else:
            self._loads += 1
        if self._hooks:
            self._emit(CacheEvent("refresh" if job.refresh else "load", k, seconds=delta))
        return value

    # -- sync bridge (used by @cached on plain functions) -----------------------

    def get_or_load_sync(
        self,
        key: str | bytes,
        loader: Callable[[], T],
        ttl: float | None = None,
        tags: Iterable[str] | None = None,
    ) -> T:
        """``get_or_load`` for synchronous code: an L1 hit is answered in the calling
        thread; anything else runs on the cache's private loop thread, with the
        (sync) ``loader`` in a worker thread."""
        k = key if type(key) is str else check_key(key)
        if not callable(loader):
            raise CacheError(f"loader must be a zero-argument callable, got {loader!r}")
        l1 = self._l1

        async def load() -> T:
            return await asyncio.get_running_loop().run_in_executor(None, loader)

        if l1 is not None:
            rec = l1.get_record(k)
            if rec is not None:
                self._hits += 1
                self._counts.count(k)
                if self._beta and should_refresh(rec, self._clock.now(), self._beta, self._rand):
                    job = _Load(k, load, check_ttl(ttl), check_tags(tags), refresh=True)
                    self._portal.call(self._start_refresh(job))
                return rec.value  # type: ignore[return-value]

        return self._portal.call(self.get_or_load(k, load, ttl, tags))

    async def _start_refresh(self, job: _Load) -> None:
        self._refresh_in_background(job)

    def delete_sync(self, key: str | bytes) -> None:
        """``delete`` for synchronous code (runs on the cache's private loop thread)."""
        self._portal.call(self.delete(key))

    # -- warming ----------------------------------------------------------------

    async def warm(self, n: int) -> int:
        """Load the ``n`` most accessed keys from the lower tiers into L1; returns how many."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"n must be an int >= 0, got {n!r}")
        if self._l1 is None or n == 0:
            return 0
        await self._counts.flush()
        return await warm(self._l1, self._lower, n, self._l1_record)

    def _schedule_flush(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a sync caller: flush on the portal loop, if it runs
            portal = self._portal.loop
            if portal is not None:
                asyncio.run_coroutine_threadsafe(self._counts.flush(), portal)
            return
        task = loop.create_task(self._counts.flush())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- coherence ----------------------------------------------------------------

    def _subscribe(self) -> None:
        if self._coherence is not None:
            self._coherence.ensure_subscribed()

    async def _publish(
        self, *, keys: tuple[str, ...] = (), tags: tuple[str, ...] = (), clear: bool = False
    ) -> None:
        if self._coherence is not None:
            await self._coherence.publish(keys=keys, tags=tags, clear=clear)

    def _on_remote_keys(self, keys: tuple[str, ...]) -> None:
        if self._hooks:
            for k in keys:
                self._emit(CacheEvent("invalidation", k))

    # -- stats --------------------------------------------------------------------

    def _hit(self, k: str, tier: str) -> None:
        self._hits += 1
        self._counts.count(k)
        if self._hooks:
            self._emit(CacheEvent("hit", k, tier))

    def _miss(self, k: str) -> None:
        self._misses += 1
        self._counts.count(k)
        if self._hooks:
            self._emit(CacheEvent("miss", k))

    def _emit(self, event: CacheEvent) -> None:
        for hook in self._hooks:
            try:
                hook(event)
            except Exception:
                log.exception("cache hook %r failed", hook)

    def stats(self) -> CacheStats:
        return CacheStats(
            hits=self._hits,
            misses=self._misses,
            loads=self._loads,
            load_errors=self._load_errors,
            coalesced=self._coalesced,
            refreshes=self._refreshes,
            invalidations_received=self._coherence.received if self._coherence else 0,
            tiers=tuple(t.stats() for t in self._tiers),
        )
