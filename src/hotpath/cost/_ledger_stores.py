"""Where the usage ledger keeps its counters: memory, one SQLite file, or Redis.

Each store holds integer counters (:data:`~hotpath.cost._ledger.COUNTERS`) per row
``(day, key, tenant, model, deployment)`` and only ever *adds* to them, atomically,
so any number of gateway processes may share one SQLite file or one Redis.

Retention: on ``add``, rows of days before ``newest day - retention_days + 1``
(the newest day among the rows being added) are dropped, once per change of that
cutoff (so about once a day per process). Redis hashes also expire
``retention_days`` after their last write.

A failure (file cannot be opened, Redis down) raises from ``add`` / ``read``; the
:class:`~hotpath.cost._ledger.Ledger` keeps the rows and tries again later.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import functools
import os
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit

from hotpath._errors import ConfigError, short_repr
from hotpath._options import check_positive, check_text
from hotpath._sqlite import use_wal, write_transaction
from hotpath.cache._redis_url import redact
from hotpath.cost._ledger_rows import COUNTERS, DIMENSIONS, RowKey

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["MemoryLedgerStore", "RedisLedgerStore", "SqliteLedgerStore"]

T = TypeVar("T")

SEP: Final = "\x1f"  # joins dimension values and the counter name in a Redis hash field
_DAY_SECONDS: Final = 86_400
_COUNTER_SET: Final = frozenset(COUNTERS)


def _cutoff(rows: Mapping[RowKey, Mapping[str, int]], retention_days: int) -> str | None:
    """The oldest day kept: ``retention_days`` days up to the newest day in ``rows``."""
    if not rows:
        return None
    newest = dt.date.fromisoformat(max(row[0] for row in rows))
    return (newest - dt.timedelta(days=retention_days - 1)).isoformat()


def _in_range(day: str, since: str | None, until: str | None) -> bool:
    # ISO dates order as strings.
    return (since is None or day >= since) and (until is None or day <= until)


class MemoryLedgerStore:
    """Counters in a dict: for tests, and for a single process that needs no history."""

    def __init__(self) -> None:
        self._rows: dict[RowKey, dict[str, int]] = {}
        self._cutoff = ""

    def __repr__(self) -> str:
        return f"MemoryLedgerStore(rows={len(self._rows)})"

    async def open(self) -> None:
        """Nothing to open."""

    async def add(self, rows: Mapping[RowKey, Mapping[str, int]], *, retention_days: int) -> None:
        store = self._rows
        for row, counters in rows.items():
            into = store.get(row)
            if into is None:
                into = store[row] = dict.fromkeys(COUNTERS, 0)
            for name, n in counters.items():
                if name in _COUNTER_SET:
                    into[name] += n
        cutoff = _cutoff(rows, retention_days)
        if cutoff is not None and cutoff > self._cutoff:
            self._cutoff = cutoff
            for row in [r for r in store if r[0] < cutoff]:
                del store[row]

    async def read(
        self, *, since: str | None, until: str | None
    ) -> list[tuple[RowKey, dict[str, int]]]:
        return [
            (row, dict(counters))
            for row, counters in self._rows.items()
            if _in_range(row[0], since, until)
        ]

    async def aclose(self) -> None:
        """Nothing to release; the counters stay readable (a test may share the store)."""


# -- SQLite --------------------------------------------------------------------------

_DIM_COLS: Final = ", ".join(DIMENSIONS)
_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS usage (\n"
    + "".join(f"    {d} TEXT NOT NULL,\n" for d in DIMENSIONS)
    + "".join(f"    {c} INTEGER NOT NULL DEFAULT 0,\n" for c in COUNTERS)
    + f"    PRIMARY KEY ({_DIM_COLS})\n) WITHOUT ROWID"
)
_UPSERT: Final = (
    f"INSERT INTO usage ({_DIM_COLS}, {', '.join(COUNTERS)}) "  # noqa: S608 - fixed names
    f"VALUES ({', '.join('?' * (len(DIMENSIONS) + len(COUNTERS)))}) "
    f"ON CONFLICT ({_DIM_COLS}) DO UPDATE SET "
    + ", ".join(f"{c} = {c} + excluded.{c}" for c in COUNTERS)
)
_SELECT: Final = f"SELECT {_DIM_COLS}, {', '.join(COUNTERS)} FROM usage"  # noqa: S608
_PRUNE: Final = "DELETE FROM usage WHERE day < ?"


class SqliteLedgerStore:
    """Counters in one SQLite file (WAL), shared safely by several processes.

    Every call runs on one worker thread of the store's own, so the event loop
    never waits on the disk or on another process's write lock (for which a
    write waits up to ``busy_timeout`` seconds). ``add`` is one transaction of
    upserts that add to the stored counters. The file and its parent directory
    are created on first use, not at construction.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        if isinstance(path, bytes) or not isinstance(path, str | os.PathLike):
            raise ConfigError(
                f"path must be a str or os.PathLike, got {type(path).__name__} {short_repr(path)}"
            )
        text = os.fspath(path)
        if not isinstance(text, str) or not text or text == ":memory:" or text.startswith("file:"):
            raise ConfigError(f"path must name a database file, got {short_repr(path)}")
        self.path = Path(text)
        self.busy_timeout = check_positive(busy_timeout, "busy_timeout")
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used on the worker thread only
        self._cutoff = ""
        self._closed = False

    def __repr__(self) -> str:
        return f"SqliteLedgerStore({str(self.path)!r}, busy_timeout={self.busy_timeout!r})"

    async def open(self) -> None:
        """Create the file (and its directory) and the table if need be."""
        await self._run(self._open)

    async def add(self, rows: Mapping[RowKey, Mapping[str, int]], *, retention_days: int) -> None:
        if not rows:
            return
        params = [(*row, *(counters.get(c, 0) for c in COUNTERS)) for row, counters in rows.items()]
        await self._run(self._add, params, _cutoff(rows, retention_days))

    async def read(
        self, *, since: str | None, until: str | None
    ) -> list[tuple[RowKey, dict[str, int]]]:
        return await self._run(self._read, since, until)

    async def aclose(self) -> None:
        """Close the connection and stop the worker thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.wrap_future(executor.submit(self._close))
        finally:
            executor.shutdown(wait=False)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="hotpath-ledger-sqlite"
            )
        return await asyncio.wrap_future(self._executor.submit(functools.partial(fn, *args)))

    # -- on the worker thread ---------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        try:
            use_wal(conn, self.busy_timeout)
            conn.execute(_SCHEMA)
            # A file made by an older hotpath lacks the counters added since.
            have = {r[1] for r in conn.execute("PRAGMA table_info(usage)")}
            for name in COUNTERS:
                if name not in have:
                    conn.execute(f"ALTER TABLE usage ADD COLUMN {name} INTEGER NOT NULL DEFAULT 0")
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _add(self, params: list[tuple[Any, ...]], cutoff: str | None) -> None:
        conn = self._open()
        with write_transaction(conn):
            conn.executemany(_UPSERT, params)
            prune = cutoff is not None and cutoff > self._cutoff
            if prune:
                conn.execute(_PRUNE, (cutoff,))
        if prune and cutoff is not None:
            self._cutoff = cutoff

    def _read(self, since: str | None, until: str | None) -> list[tuple[RowKey, dict[str, int]]]:
        conn = self._open()
        where: list[str] = []
        args: list[str] = []
        if since is not None:
            where.append("day >= ?")
            args.append(since)
        if until is not None:
            where.append("day <= ?")
            args.append(until)
        sql = _SELECT + (f" WHERE {' AND '.join(where)}" if where else "")
        n = len(DIMENSIONS)
        return [
            ((r[0], r[1], r[2], r[3], r[4]), dict(zip(COUNTERS, r[n:], strict=True)))
            for r in conn.execute(sql, args)
        ]

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


# -- Redis ---------------------------------------------------------------------------

_REDIS_SCHEMES: Final = ("redis", "rediss", "unix")


# KEYS[1]: a day's hash. ARGV[1]: its expiry in seconds, then field, increment pairs.
_INCREMENT = """
for i = 2, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 0
"""
_CHUNK = 4000  # field and increment arguments per script call (2000 counters)


class RedisLedgerStore:
    """Counters in Redis, shared by every replica that uses the same ``prefix``.

    Layout::

        {prefix}usage:{day}    a hash per UTC day; field "key\\x1ftenant\\x1fmodel\\x1f
                               deployment\\x1fcounter", value an integer (HINCRBY)
        {prefix}usage:days     a sorted set of the days present (score: the day's
                               ordinal), so a report reads its range without SCAN

    ``add`` is one pipeline (not a transaction): per touched day, one script that
    HINCRBYs every non-zero counter and sets the hash's expiry to
    ``retention_days``; then the days index. Each
    increment is atomic, so replicas adding to the same counters lose nothing.
    A pipeline cut off after Redis ran it (a timeout on the reply) is retried by
    the ledger and then counted twice: the ledger is at-least-once in that case.

    Connection timeouts default to 2 s (connect) and 5 s (each reply); the URL's
    ``socket_connect_timeout`` / ``socket_timeout`` parameters override them. The
    client is made by :meth:`open`, in the event loop that then uses the store.
    """

    def __init__(self, url: str, *, prefix: str = "hp:") -> None:
        if not isinstance(url, str) or urlsplit(url).scheme.lower() not in _REDIS_SCHEMES:
            raise ConfigError(
                "url must start with redis://, rediss:// or unix://, "
                f"got {short_repr(redact(url) if isinstance(url, str) else url)}"
            )
        from redis.asyncio.connection import parse_url

        try:
            parse_url(url)
        except ValueError as exc:
            raise ConfigError(f"url {redact(url)!r} is not a valid Redis URL: {exc}") from None
        self._url = url
        self._prefix = check_text(prefix, "prefix")
        self._days_key = f"{prefix}usage:days"
        self._client: Redis | None = None
        self._increment: AsyncScript | None = None
        self._cutoff = ""
        self._closed = False

    def __repr__(self) -> str:
        return f"RedisLedgerStore({redact(self._url)!r}, prefix={self._prefix!r})"

    @property
    def prefix(self) -> str:
        return self._prefix

    async def open(self) -> None:
        """Make the client (connections are opened by the first command)."""
        self._conn()

    def _conn(self) -> Redis:
        if self._client is None:
            if self._closed:
                raise RuntimeError(f"{self!r} is closed")
            from redis.asyncio import Redis
            from redis.backoff import NoBackoff
            from redis.exceptions import ConnectionError as RedisConnectionError
            from redis.retry import Retry

            # One retry on a connection error: after a Redis restart the first
            # command on a pooled connection finds it dead and should reconnect.
            self._client = Redis.from_url(
                self._url,
                socket_connect_timeout=2.0,
                socket_timeout=5.0,
                retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            )
        return self._client

    def _day_key(self, day: str) -> str:
        return f"{self._prefix}usage:{day}"

    async def add(self, rows: Mapping[RowKey, Mapping[str, int]], *, retention_days: int) -> None:
        if not rows:
            return
        client = self._conn()
        if self._increment is None:
            self._increment = client.register_script(_INCREMENT)
        ttl = retention_days * _DAY_SECONDS
        # One script per day's hash (in chunks): a pipeline of HINCRBYs costs redis-py
        # ~10 us of event-loop CPU per command, ~40 ms for a 1000-row flush.
        by_day: dict[str, list[str | int]] = {}
        for (day, *dims), counters in rows.items():
            args = by_day.setdefault(day, [])
            base = SEP.join(dims) + SEP
            for name, n in counters.items():
                if n:
                    args += (base + name, n)
        pipe = client.pipeline(transaction=False)
        for day, args in by_day.items():
            for start in range(0, max(len(args), 2), _CHUNK):
                await self._increment(
                    keys=[self._day_key(day)],
                    args=[ttl, *args[start : start + _CHUNK]],
                    client=pipe,
                )
        days = by_day.keys()
        pipe.zadd(self._days_key, {day: dt.date.fromisoformat(day).toordinal() for day in days})
        cutoff = _cutoff(rows, retention_days)
        prune = cutoff is not None and cutoff > self._cutoff
        if prune and cutoff is not None:
            pipe.zremrangebyscore(
                self._days_key, "-inf", f"({dt.date.fromisoformat(cutoff).toordinal()}"
            )
        pipe.expire(self._days_key, ttl)
        await pipe.execute()
        if prune and cutoff is not None:
            self._cutoff = cutoff

    async def read(
        self, *, since: str | None, until: str | None
    ) -> list[tuple[RowKey, dict[str, int]]]:
        client = self._conn()
        low = dt.date.fromisoformat(since).toordinal() if since is not None else "-inf"
        high = dt.date.fromisoformat(until).toordinal() if until is not None else "+inf"
        days = [
            d.decode() if isinstance(d, bytes) else str(d)
            for d in await client.zrangebyscore(self._days_key, low, high)
        ]
        if not days:
            return []
        pipe = client.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(self._day_key(day))
        hashes = await pipe.execute()
        out: dict[RowKey, dict[str, int]] = {}
        for day, fields in zip(days, hashes, strict=True):
            for field, value in fields.items():
                parts = field.decode("utf-8", "replace").split(SEP)
                if len(parts) != len(DIMENSIONS) or parts[-1] not in _COUNTER_SET:
                    continue  # not ours (or a counter of a newer hotpath)
                row: RowKey = (day, parts[0], parts[1], parts[2], parts[3])
                counters = out.get(row)
                if counters is None:
                    counters = out[row] = dict.fromkeys(COUNTERS, 0)
                counters[parts[4]] += int(value)
        return list(out.items())

    async def aclose(self) -> None:
        """Close the client and its connections (idempotent)."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
