"""The SQLite tier (L3): the embedded, persistent default.

With no Redis configured hotpath runs on memory + SQLite only. One database file
holds every entry; it survives restarts (TTLs included) and may be shared by
several processes on one host.

How it works, and why:

* **Inline, not offloaded.** Calls run synchronously inside the ``async``
  methods. A WAL point read costs ~2 us; handing it to a worker thread would cost
  ~50 us, and an L3 hit should cost <= 10 us (``bench/sqlite_tier.py`` measures
  it against a raw ``sqlite3`` read). A write holds the event loop for one short
  transaction, and for at most ``busy_timeout`` while another process holds the
  write lock; past that the write fails as a backend fault.
* **One connection per thread** (``threading.local``), so the TieredCache's
  helper thread and the event loop never share one. Finding it costs about what
  an uncontended lock does, and under the GIL two threads read about as fast
  either way (both measured in the bench); the reason is isolation: a shared
  connection is one transaction context, so a lock around it would have to span
  whole write transactions, and a write waiting ``busy_timeout`` for another
  process would stall this process's reads. With a connection per thread, WAL
  lets them go on.
* **Layout.** ``entries(key, value, expires_at, written_at, hits, size)``: the
  value is the :class:`~hotpath.cache._codec.Codec` envelope (value, expiry and
  delta), ``expires_at`` is repeated in a column for reads and purges, ``size``
  is ``len(value) + len(key in UTF-8)``. ``tags(tag, key)`` is indexed both ways.
  A one-row ``meta`` table holds the entry count and byte total, kept by
  triggers inside every write transaction, so it stays exact with several
  processes writing and costs O(1) to read.
* **Writes** run in ``BEGIN IMMEDIATE`` transactions (WAL, ``synchronous=NORMAL``):
  upsert, replace the key's tag links, flush pending hit counts, purge expired
  rows when ``purge_interval`` has passed (at most a batch per write; no
  background threads), then enforce the bounds. Over ``max_entries`` or
  ``max_bytes`` the tier drops expired rows first (counted as expirations), then
  the least valuable live rows (fewest hits, then oldest written; counted as
  evictions), down to the bound and on towards 90% of it, at most
  ``EVICT_BATCH`` rows beyond the bound per write so no transaction runs long.
  Rows written by the same call are evicted last.
* **Checkpoints** of the WAL run on a thread of their own, one every
  ``CHECKPOINT_EVERY`` writes (``_sqlite_checkpoint.py``): SQLite's automatic
  checkpoint runs inside the write that triggers it, fsyncs included, and held a
  gateway's event loop 3-9 ms every ~170 writes. The automatic one stays as a
  backstop at 10,000 pages.
* **Faults.** A corrupt file (not a database, malformed) is logged at ERROR,
  moved aside to ``<path>.corrupt-<UTC time>`` with its ``-wal``/``-shm``, and a
  fresh database is created on the next call. Any other backend fault (cannot
  create or open the file, read-only, disk full, I/O error) is counted, marks the
  tier unhealthy (reads miss, writes are dropped) and the backend is retried on
  fresh connections after the backoff. A write lock held by another process past
  ``busy_timeout`` only drops that one call (counted in ``errors``): contention
  is not a broken backend.
  Bad input (key, TTL, tags, an unencodable value) still raises: records are
  encoded before the database is touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar, Final, TypeVar
from urllib.parse import unquote, urlsplit

from hotpath._clock import Clock, SystemClock
from hotpath._errors import CacheError, ConfigError, InvalidKeyError
from hotpath._sqlite import use_wal, write_transaction
from hotpath.cache import _sqlite_store as db
from hotpath.cache._codec import Codec
from hotpath.cache._health import Health
from hotpath.cache._record import Record
from hotpath.cache._sqlite_checkpoint import BACKSTOP_PAGES, Checkpointer
from hotpath.cache._stats import TierCounters, TierStats
from hotpath.cache._tier import WriteItem
from hotpath.cache._urls import parse_float, parse_int, parse_options, parse_size
from hotpath.cache._validate import check_count, check_key, check_non_negative
from hotpath.cache._values import AsyncValueTier

__all__ = ["SQLiteTier"]

log = logging.getLogger("hotpath.cache")

T = TypeVar("T")

_SAMPLE_MASK: Final = 7  # time one read call in 8
CHECKPOINT_EVERY: Final = 64  # writes between background checkpoints
_MAX_PENDING_HITS: Final = 10_000


_FAULTS: Final = (sqlite3.Error, OSError)


class _Conn:
    """One thread's connection, with the generation and file identity it was opened at."""

    __slots__ = ("__weakref__", "conn", "cursor", "gen", "inode")

    def __init__(self, conn: sqlite3.Connection, gen: int, inode: tuple[int, int] | None) -> None:
        self.conn = conn
        self.cursor = conn.cursor()  # reused by reads: saves a cursor allocation per call
        self.gen = gen
        self.inode = inode

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()


class SQLiteTier(AsyncValueTier):
    """A cache tier in one SQLite file (WAL), bounded by entry count and bytes.

    Nothing is opened until the first call, so construction never fails on I/O.
    ``path``'s parent directory is created then. ``busy_timeout`` bounds how long
    a call waits for another process's write lock; ``purge_interval`` is how
    often (by ``clock``) a write also deletes expired rows. ``synchronous="off"``
    skips the fsyncs of WAL checkpoints: faster and free of their stalls, at the
    price that an OS crash or power loss (not a process crash) may corrupt the
    file. The tier then moves the corrupt file aside and starts afresh.
    """

    name: ClassVar[str] = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str] = ".hotpath/cache.db",
        *,
        max_entries: int = 1_000_000,
        max_bytes: int = 1_000_000_000,
        codec: Codec | None = None,
        clock: Clock | None = None,
        busy_timeout: float = 0.2,
        purge_interval: float = 60.0,
        synchronous: str = "normal",
        base_backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        if isinstance(path, bytes) or not isinstance(path, str | os.PathLike):
            raise ConfigError(
                f"path must be a str or os.PathLike, got {type(path).__name__} {path!r}"
            )
        text = os.fspath(path)
        if not isinstance(text, str) or not text or text == ":memory:" or text.startswith("file:"):
            raise ConfigError(
                "path must name a database file (use memory:// for an in-memory tier), "
                f"got {path!r}"
            )
        self.path = Path(text)
        self.max_entries = check_count(max_entries, "max_entries")
        self.max_bytes = check_count(max_bytes, "max_bytes")
        if codec is not None and not isinstance(codec, Codec):
            raise ConfigError(
                f"codec must be a Codec or None, got {type(codec).__name__} {codec!r}"
            )
        if clock is not None and not (
            callable(getattr(clock, "now", None)) and callable(getattr(clock, "monotonic", None))
        ):
            raise ConfigError(f"clock must have now() and monotonic(), got {clock!r}")
        self.busy_timeout = check_non_negative(busy_timeout, "busy_timeout")
        if not isinstance(synchronous, str) or synchronous.lower() not in ("normal", "off"):
            raise ConfigError(f"synchronous must be 'normal' or 'off', got {synchronous!r}")
        self.synchronous = synchronous.lower()
        self.purge_interval = check_non_negative(purge_interval, "purge_interval")
        self._codec = codec if codec is not None else Codec()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._health = Health(
            self.name, self._clock, base_backoff=base_backoff, max_backoff=max_backoff
        )
        self._counters = TierCounters()
        self._local = threading.local()
        self._lock = threading.RLock()  # opening, recovery and close; never held on the hot path
        self._conns: weakref.WeakSet[_Conn] = weakref.WeakSet()
        self._gen = 0  # bumped to make every thread reopen (after a fault, a rebuild, close)
        self._ready_gen = -1  # generation whose schema has been checked
        self._next_purge = 0.0
        self._pending_hits: dict[str, int] = {}
        self._calls = 0
        self._closed = False
        self._checkpointer = Checkpointer(self._checkpoint, CHECKPOINT_EVERY)

    @classmethod
    def from_url(
        cls, url: str, *, clock: Clock | None = None, codec: Codec | None = None
    ) -> SQLiteTier:
        """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``.

        Query parameters: ``max_entries``, ``max_bytes`` (``1GB``, ``512MiB``, ...),
        ``busy_timeout`` and ``purge_interval`` (seconds), ``synchronous`` (``normal``
        or ``off``).
        """
        if not isinstance(url, str):
            raise ConfigError(f"cache URL must be a str, got {type(url).__name__} {url!r}")
        parts = urlsplit(url)
        if parts.scheme.lower() != "sqlite":
            raise ConfigError(f"not a sqlite:// URL: {url!r}")
        if parts.netloc:
            raise ConfigError(
                "sqlite URL must have an empty host (sqlite:///relative.db or "
                f"sqlite:////abs.db), got {url!r}"
            )
        if not parts.path.startswith("/") or len(parts.path) < 2:
            raise ConfigError(f"sqlite URL names no file (sqlite:///path/to/cache.db), got {url!r}")
        path = unquote(parts.path[1:])
        kwargs = parse_options(
            url,
            {
                "max_entries": parse_int,
                "max_bytes": parse_size,
                "busy_timeout": parse_float,
                "purge_interval": parse_float,
                "synchronous": lambda text, _name: text,
            },
        )
        return cls(path, clock=clock, codec=codec, **kwargs)

    def __repr__(self) -> str:
        return (
            f"SQLiteTier(path={str(self.path)!r}, max_entries={self.max_entries!r}, "
            f"max_bytes={self.max_bytes!r}, busy_timeout={self.busy_timeout!r}, "
            f"synchronous={self.synchronous!r}, "
            f"purge_interval={self.purge_interval!r})"
        )

    # -- the Tier interface -----------------------------------------------------

    async def read_many(self, keys: Sequence[str]) -> list[Record | None]:
        counters = self._counters
        if self._closed:
            raise CacheError(f"{self!r} is closed")
        health = self._health
        if not health.ready():
            counters.misses += len(keys)
            return [None] * len(keys)
        self._calls = calls = self._calls + 1
        t0 = time.perf_counter() if not calls & _SAMPLE_MASK else 0.0
        out: list[Record | None] = []
        try:
            state = getattr(self._local, "state", None)
            if state is None or state.gen != self._gen:
                state = self._reconnect()
            execute = state.cursor.execute
            now = self._clock.now()
            decode = self._codec.decode
            for key in keys:
                row = execute(db.GET, (key,)).fetchone()
                if row is None or (row[1] is not None and row[1] <= now):
                    out.append(None)
                    counters.misses += 1
                    continue
                record = decode(row[0], key)
                out.append(record)
                if record is None:
                    counters.misses += 1
                else:
                    counters.hits += 1
        except _FAULTS as exc:
            self._fault(exc, "read")
            counters.misses += len(keys) - len(out)
            return [None] * len(keys)
        if not health.healthy:
            health.ok()
        if t0:
            counters.latency.record(time.perf_counter() - t0)
        return out

    async def write_many(self, items: Sequence[WriteItem], *, only_missing: bool = False) -> None:
        self._check_open()
        now = self._clock.now()
        encode = self._codec.encode
        # Last write of a key wins; None means "already expired or too large: drop it".
        rows: dict[str, tuple[str, bytes, float | None, float, int, tuple[str, ...]] | None] = {}
        for key, record, tags in items:
            if record.expires_at is not None and record.expires_at <= now:
                if not only_missing:
                    rows[key] = None
                continue
            try:
                key_size = len(key.encode())
            except UnicodeEncodeError:
                raise InvalidKeyError(f"key must be valid UTF-8 text, got {key!r}") from None
            blob = encode(record)  # a CodecError raises here, before any I/O
            size = len(blob) + key_size
            if size > self.max_bytes:
                log.debug(
                    "cache entry %r (%d bytes) exceeds max_bytes; not stored in sqlite", key, size
                )
                rows[key] = None
                continue
            rows[key] = (key, blob, record.expires_at, now, size, tags)
        if not rows and not self._pending_hits:
            return
        live = [r for r in rows.values() if r is not None]
        dead = [(k,) for k, r in rows.items() if r is None]

        def write(conn: sqlite3.Connection) -> None:
            nonlocal live
            with write_transaction(conn):
                if only_missing and live:
                    present = db.live_keys(conn, [r[0] for r in live], now)
                    live = [r for r in live if r[0] not in present]
                if dead:
                    conn.executemany(db.DELETE, dead)
                if live:
                    conn.executemany(db.UNTAG_KEY, [(r[0],) for r in live])
                    conn.executemany(db.UPSERT, [r[:5] for r in live])
                    conn.executemany(db.TAG, [(t, r[0]) for r in live for t in r[5]])
                self._flush_hits(conn)
                self._purge_if_due(conn, now)
                expired, evicted = db.evict(
                    conn, self.max_entries, self.max_bytes, now, {r[0] for r in live}
                )
            counters = self._counters
            counters.sets += len(live)
            counters.expirations += expired
            counters.evictions += evicted

        self._run("write", write, None, retry=True)
        self._checkpointer.wrote()

    async def remove_many(self, keys: Sequence[str]) -> None:
        if keys:
            self._run("remove", lambda conn: self._remove(conn, keys), 0)
        else:
            self._check_open()

    async def remove_tags(self, tags: Sequence[str]) -> None:
        self._check_open()
        if not tags:
            return

        def remove(conn: sqlite3.Connection) -> None:
            with write_transaction(conn):
                n = conn.executemany(db.DELETE_TAGGED, [(t,) for t in tags]).rowcount
                conn.executemany(db.DROP_TAG, [(t,) for t in tags])
            self._counters.deletes += max(n, 0)

        self._run("remove_tags", remove, None)

    async def clear(self) -> None:
        def clear(conn: sqlite3.Connection) -> None:
            with write_transaction(conn):
                conn.execute("DELETE FROM tags")  # first, so the delete trigger finds no links
                conn.execute("DELETE FROM entries")
                conn.execute("UPDATE meta SET entries = 0, bytes = 0 WHERE id = 1")
            self._pending_hits.clear()

        self._run("clear", clear, None)

    async def add_hits(self, counts: Mapping[str, int]) -> None:
        self._check_open()
        rows = [(n, k) for k, n in counts.items() if n > 0]
        if not rows:
            return

        def add(conn: sqlite3.Connection) -> None:
            with write_transaction(conn):
                conn.executemany(db.ADD_HITS, rows)
                self._flush_hits(conn)

        self._run("add_hits", add, None)

    async def hottest(self, n: int) -> list[str]:
        self._check_open()
        if n <= 0:
            return []
        now = self._clock.now()
        return self._run(
            "hottest", lambda conn: [r[0] for r in conn.execute(db.HOTTEST, (now, n))], []
        )

    def stats(self) -> TierStats:
        entries = nbytes = -1
        if not self._closed and self._health.ready():
            meta = self._run("stats", lambda conn: conn.execute(db.META).fetchone(), None)
            if meta is not None:
                entries, nbytes = meta
        return self._counters.snapshot(
            self.name, healthy=self._health.healthy, entries=entries, nbytes=nbytes
        )

    @property
    def healthy(self) -> bool:
        return self._health.healthy

    async def aclose(self) -> None:
        """Flush pending hit counts and close every thread's connection."""
        if self._closed:
            return
        self._checkpointer.close()
        if self._pending_hits and self._health.ready():

            def flush(conn: sqlite3.Connection) -> None:
                with write_transaction(conn):
                    self._flush_hits(conn)

            self._run("add_hits", flush, None)
        with self._lock:
            self._closed = True
            self._gen += 1
            for c in list(self._conns):
                c.close()
            self._conns.clear()

    # -- convenience API for direct users ---------------------------------------

    async def delete(self, key: str | bytes) -> bool:
        """Remove ``key``; True if a live entry was there."""
        k = check_key(key)
        now = self._clock.now()

        def delete(conn: sqlite3.Connection) -> bool:
            with write_transaction(conn):
                row = conn.execute(db.EXPIRES_AT, (k,)).fetchone()
                if row is None:
                    return False
                conn.execute(db.DELETE, (k,))
            self._counters.deletes += 1
            return row[0] is None or row[0] > now

        return self._run("delete", delete, False)

    # -- internals ---------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise CacheError(f"{self!r} is closed")

    def _run(
        self, op: str, fn: Callable[[sqlite3.Connection], T], default: T, *, retry: bool = False
    ) -> T:
        """``fn(connection)``, or ``default`` if the backend is bypassed or faults.

        With ``retry``, a call that found the file corrupt runs once more on the
        fresh database.
        """
        self._check_open()
        if not self._health.ready():
            return default
        retried = False
        started = time.monotonic()
        pause = 0.0005
        while True:
            try:
                state = getattr(self._local, "state", None)
                if state is None or state.gen != self._gen:
                    state = self._reconnect()
                out = fn(state.conn)
            except _FAULTS as exc:
                # SQLite answers "locked" at once, without its busy handler, in a few
                # transient states (another process switching the file to WAL or
                # rebuilding it): wait a little, within busy_timeout, and try again.
                if _is_busy(exc) and time.monotonic() - started + pause < self.busy_timeout:
                    time.sleep(pause)
                    pause = min(pause * 2, 0.02)
                    continue
                if self._fault(exc, op) and retry and not retried:
                    retried = True
                    continue
                return default
            if not self._health.healthy:
                self._health.ok()
            return out

    def _reconnect(self) -> _Conn:
        """Open this thread's connection (creating the file and schema if need be)."""
        old: _Conn | None = getattr(self._local, "state", None)
        self._local.state = None
        if old is not None:
            self._conns.discard(old)
            old.close()
        with self._lock:
            self._check_open()
            gen = self._gen
            first = self._ready_gen != gen
            if first:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn, identity = self._connect()
            state = _Conn(conn, gen, identity)
            try:
                self._configure(conn)
                if first:
                    db.init_schema(conn, self.path)
                    self._ready_gen = gen
            except BaseException:
                state.close()
                state.gen = -1  # never current: the next call reconnects
                self._local.state = state  # recovery needs the inode of the failing file
                raise
            self._conns.add(state)
            self._local.state = state
            return state

    def _connect(self) -> tuple[sqlite3.Connection, tuple[int, int] | None]:
        """A connection and the identity of the file it opened.

        The identity is read before and after opening: if another process replaced
        the file in between (rebuilding a corrupt one), we cannot tell which file we
        got, so we open again. Without this, a process could take a fresh file for
        the corrupt one it had opened, and move it aside too.
        """
        for _ in range(5):
            before = db.file_identity(self.path)
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,  # so aclose() may close other threads' connections
            )
            after = db.file_identity(self.path)
            if before == after or before is None:
                return conn, after
            conn.close()
        return conn, None  # the file keeps changing: recovery will not move anything aside

    def _configure(self, conn: sqlite3.Connection) -> None:
        """Per-connection setup (a test hook: subclasses may add pragmas)."""
        use_wal(conn, self.busy_timeout)
        conn.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
        if self.synchronous == "off":
            conn.execute("PRAGMA synchronous = OFF")

    def _checkpoint(self) -> None:
        """A passive checkpoint on the calling (checkpoint) thread's connection."""

        def checkpoint(conn: sqlite3.Connection) -> None:
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):  # another process is checkpointing: fine
                    raise

        if not self._closed:
            self._run("checkpoint", checkpoint, None)

    def _fault(self, exc: BaseException, op: str) -> bool:
        """Handle a backend fault; True if a corrupt file was replaced by a fresh one."""
        self._counters.errors += 1
        if _is_busy(exc):
            # Another process held the write lock past busy_timeout: drop this one call
            # (counted) but keep the tier; contention is not a broken backend.
            log.debug("cache tier sqlite: %s skipped, database busy: %s", op, exc)
            return False
        if db.is_corrupt(exc) and self._recover(exc):
            return True
        with self._lock:
            self._gen += 1  # after the backoff, every thread reopens on a fresh connection
        self._health.fail(exc, op)
        return False

    def _recover(self, exc: BaseException) -> bool:
        """Move the corrupt file aside (the next call creates a fresh one); False if stuck."""
        with self._lock:
            self._gen += 1
            state: _Conn | None = getattr(self._local, "state", None)
            self._local.state = None
            if state is not None:
                self._conns.discard(state)
                state.close()
            try:
                inode = state.inode if state else None
                dest = db.move_aside(self.path, inode, self._clock.now(), self.busy_timeout)
            except OSError as move_exc:
                log.error(
                    "cache tier sqlite: database %s is corrupt (%s) and cannot be moved aside: %s",
                    self.path,
                    exc,
                    move_exc,
                )
                return False
            if dest is not None:
                log.error(
                    "cache tier sqlite: database %s is corrupt (%s); moved it aside to %s "
                    "and started a fresh database",
                    self.path,
                    exc,
                    dest,
                )
            return True

    def _remove(self, conn: sqlite3.Connection, keys: Sequence[str]) -> int:
        with write_transaction(conn):
            n = max(conn.executemany(db.DELETE, [(k,) for k in keys]).rowcount, 0)
        self._counters.deletes += n
        return n

    def _note_hits(self, keys: Sequence[str]) -> None:
        pending = self._pending_hits
        for key in keys:
            if key in pending or len(pending) < _MAX_PENDING_HITS:
                pending[key] = pending.get(key, 0) + 1

    def _flush_hits(self, conn: sqlite3.Connection) -> None:
        """Add the hit counts ``get`` collected (inside the caller's write transaction)."""
        if self._pending_hits:
            pending, self._pending_hits = self._pending_hits, {}
            conn.executemany(db.ADD_HITS, [(n, k) for k, n in pending.items()])

    def _purge_if_due(self, conn: sqlite3.Connection, now: float) -> None:
        mono = self._clock.monotonic()
        if mono < self._next_purge:
            return
        removed = db.purge_expired(conn, now)
        self._counters.expirations += removed
        # A full batch means more are waiting: purge again on the next write.
        self._next_purge = mono if removed >= db.PURGE_BATCH else mono + self.purge_interval
        # Also notice, once per interval, a file replaced by another process (after it
        # moved a corrupt one aside): this connection would otherwise keep the old one.
        state: _Conn | None = getattr(self._local, "state", None)
        if state is not None and state.inode != db.file_identity(self.path):
            with self._lock:
                self._gen += 1


def _is_busy(exc: BaseException) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
