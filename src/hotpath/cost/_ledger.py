"""The usage ledger: requests, tokens, spend and savings by key, tenant, model,
deployment and UTC day.

:meth:`Ledger.record` (an upstream call) and :meth:`Ledger.record_saving` (a
cache hit, or a call that joined another's) are synchronous and do no I/O: they
add to an in-memory batch with one row per ``(day, key, tenant, model,
deployment)``. A background task writes the batch to a :class:`LedgerStore`
every ``flush_interval`` seconds, as integer increments (cost in nano-dollars),
so several gateway replicas can add to the same counters in one SQLite file or
one Redis. A failed write puts the rows back in the batch (nothing is lost; the
batch grows with the number of distinct rows, not with time) and is retried at
the next flush. :meth:`Ledger.report` reads the store plus the unflushed batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import unquote, urlsplit

from hotpath._clock import Clock, SystemClock
from hotpath._errors import ConfigError, short_repr
from hotpath._options import check_count, check_positive
from hotpath.cache._redis_url import redact
from hotpath.cost import _ledger_stores as stores
from hotpath.cost._ledger_rows import (
    COL_CACHED,
    COL_COALESCED,
    COL_COMPLETION,
    COL_COST,
    COL_ERRORS,
    COL_ESTIMATED,
    COL_HITS,
    COL_PROMPT,
    COL_REQUESTS,
    COL_SAVED,
    COL_SAVED_MS,
    COL_SAVED_UNKNOWN,
    COL_UNKNOWN,
    COUNTERS,
    DIMENSIONS,
    RowKey,
    SpendRow,
    check_by,
    check_day,
    check_where,
    dimension,
    spend_row,
    to_nanos,
)
from hotpath.cost._usage import Usage

__all__ = ["Ledger", "LedgerStats", "LedgerStore", "open_ledger_store"]

log = logging.getLogger("hotpath.cost")


class LedgerStore(Protocol):
    """Where a :class:`Ledger` keeps its counters (see ``_ledger_stores``).

    ``add`` adds integer increments to the counters of each row, atomically per
    counter, so that stores shared by several processes lose nothing. ``read``
    returns every row of the days ``since`` .. ``until`` (inclusive ISO dates;
    ``None`` is open-ended). Failures raise; the ledger retries.
    """

    async def open(self) -> None: ...

    async def add(
        self, rows: Mapping[RowKey, Mapping[str, int]], *, retention_days: int
    ) -> None: ...

    async def read(
        self, *, since: str | None, until: str | None
    ) -> list[tuple[RowKey, dict[str, int]]]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class LedgerStats:
    """``recorded``: calls of record / record_saving; ``flushed_rows``: rows written
    to the store; ``flush_failures``: flushes that failed (their rows were kept);
    ``pending_rows``: rows waiting in the batch."""

    recorded: int
    flushed_rows: int
    flush_failures: int
    pending_rows: int


class Ledger:
    """Counts usage by ``(day, key, tenant, model, deployment)`` and reports spend.

    ``day`` is the UTC date of ``clock.now()`` at the time of recording. Call
    :meth:`start` (opens the store, starts flushing every ``flush_interval``
    seconds) and :meth:`aclose` (final flush, closes the store). The store drops
    rows older than ``retention_days`` days.
    """

    def __init__(
        self,
        store: LedgerStore,
        *,
        clock: Clock | None = None,
        flush_interval: float = 1.0,
        retention_days: int = 400,
    ) -> None:
        for method in ("open", "add", "read", "aclose"):
            if not callable(getattr(store, method, None)):
                raise ConfigError(
                    f"store must be a LedgerStore (with {method}()), got {short_repr(store)}"
                )
        if clock is not None and not callable(getattr(clock, "now", None)):
            raise ConfigError(f"clock must have now(), got {short_repr(clock)}")
        self._store = store
        self._clock: Clock = clock if clock is not None else SystemClock()
        self.flush_interval = check_positive(flush_interval, "flush_interval")
        self.retention_days = check_count(retention_days, "retention_days")
        self._batch: dict[RowKey, list[int]] = {}
        self._day = ""
        self._day_start = 0.0
        self._day_end = 0.0  # [start, end) of self._day in clock seconds; empty at first
        self._lock = asyncio.Lock()  # one flush or report at a time
        self._task: asyncio.Task[None] | None = None
        self._opened = False
        self._failing = False
        self._closed = False
        self._recorded = 0
        self._flushed_rows = 0
        self._flush_failures = 0

    def __repr__(self) -> str:
        return (
            f"Ledger({self._store!r}, flush_interval={self.flush_interval!r}, "
            f"retention_days={self.retention_days!r})"
        )

    @property
    def stats(self) -> LedgerStats:
        return LedgerStats(
            recorded=self._recorded,
            flushed_rows=self._flushed_rows,
            flush_failures=self._flush_failures,
            pending_rows=len(self._batch),
        )

    # -- recording (synchronous, no I/O) ----------------------------------------------

    def record(
        self,
        *,
        key: str,
        tenant: str,
        model: str,
        deployment: str,
        usage: Usage | None,
        cost: float | None,
        error: bool = False,
    ) -> None:
        """Count one upstream call: a request, its tokens and ``cost`` (USD).

        ``cost=None`` means the model has no price: counted in ``unknown_cost``
        (when there is ``usage``), never guessed. ``usage=None`` means no usage at
        all (a failed call: pass ``error=True``); ``usage.estimated`` counts in
        ``estimated``. ``error`` counts in ``errors``.
        """
        if usage is not None and not isinstance(usage, Usage):
            raise ConfigError(f"usage must be a Usage or None, got {short_repr(usage)}")
        nanos = to_nanos(cost, "cost")
        row = self._row(key, tenant, model, deployment)
        row[COL_REQUESTS] += 1
        if error:
            row[COL_ERRORS] += 1
        if usage is not None:
            row[COL_PROMPT] += usage.prompt_tokens
            row[COL_COMPLETION] += usage.completion_tokens
            row[COL_CACHED] += usage.cached_tokens
            if usage.estimated:
                row[COL_ESTIMATED] += 1
            if nanos is None:
                row[COL_UNKNOWN] += 1
        if nanos is not None:
            row[COL_COST] += nanos
        self._recorded += 1

    def record_saving(
        self,
        *,
        key: str,
        tenant: str,
        model: str,
        deployment: str,
        cost: float | None,
        latency: float,
        kind: Literal["hit", "coalesced"] = "hit",
    ) -> None:
        """Count a call that did not reach the upstream: a cache ``"hit"``, or one
        ``"coalesced"`` into another's call. It saved ``cost`` USD (``None``: the
        model has no price, counted in ``saved_unknown``) and ``latency`` seconds."""
        if kind not in ("hit", "coalesced"):
            raise ConfigError(f"kind must be 'hit' or 'coalesced', got {short_repr(kind)}")
        nanos = to_nanos(cost, "cost")
        if (
            isinstance(latency, bool)
            or not isinstance(latency, int | float)
            or not math.isfinite(latency)
            or latency < 0
        ):
            raise ConfigError(f"latency must be a number of seconds >= 0, got {latency!r}")
        row = self._row(key, tenant, model, deployment)
        row[COL_HITS if kind == "hit" else COL_COALESCED] += 1
        if nanos is None:
            row[COL_SAVED_UNKNOWN] += 1
        else:
            row[COL_SAVED] += nanos
        row[COL_SAVED_MS] += round(latency * 1000)
        self._recorded += 1

    def _row(self, key: str, tenant: str, model: str, deployment: str) -> list[int]:
        now = self._clock.now()
        if now < self._day_start or now >= self._day_end:
            self._set_day(now)
        row_key: RowKey = (
            self._day,
            dimension(key, "key"),
            dimension(tenant, "tenant"),
            dimension(model, "model"),
            dimension(deployment, "deployment"),
        )
        row = self._batch.get(row_key)
        if row is None:
            row = self._batch[row_key] = [0] * len(COUNTERS)
        return row

    def _set_day(self, now: float) -> None:
        day = dt.datetime.fromtimestamp(now, dt.UTC).date()
        start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
        self._day, self._day_start, self._day_end = day.isoformat(), start, start + 86_400

    # -- writing --------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store and start flushing every ``flush_interval`` seconds.

        A store that cannot be opened now is logged, not raised: each flush tries
        again, and the records wait in memory meanwhile.
        """
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if self._task is not None:
            return
        try:
            await self._open()
        except Exception as exc:  # noqa: BLE001 - retried by every flush
            self._fault(exc, "open")
        self._task = asyncio.create_task(self._flush_forever(), name="hotpath-ledger-flush")

    async def flush(self) -> None:
        """Write the batch to the store now. Never raises for a store failure: the
        rows go back into the batch, ``stats.flush_failures`` counts the failure and
        the first failure of a streak is logged at WARNING."""
        async with self._lock:
            await self._flush_locked()

    async def aclose(self) -> None:
        """Stop the background flush, flush once more (best effort: rows that still
        cannot be written are logged and dropped) and close the store. Idempotent."""
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        async with self._lock:  # an in-flight flush finishes first; never cut one off
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._flush_locked()
            if self._batch:
                log.warning(
                    "usage ledger: closing with %d rows not written to %r; they are lost",
                    len(self._batch),
                    self._store,
                )
            try:
                await self._store.aclose()
            except Exception as exc:  # noqa: BLE001 - closing is best effort
                log.warning("usage ledger: closing %r failed: %s", self._store, exc)

    async def _open(self) -> None:
        if not self._opened:
            await self._store.open()
            self._opened = True

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            await self.flush()

    async def _flush_locked(self) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch, {}
        rows = {row: dict(zip(COUNTERS, counts, strict=True)) for row, counts in batch.items()}
        try:
            await self._open()
            await self._store.add(rows, retention_days=self.retention_days)
        except BaseException as exc:
            self._merge_back(batch)
            if not isinstance(exc, Exception):
                raise  # cancelled: the rows are back in the batch
            self._flush_failures += 1
            self._fault(exc, "flush")
            return
        self._flushed_rows += len(batch)
        if self._failing:
            self._failing = False
            log.warning("usage ledger: %r works again; wrote %d rows", self._store, len(batch))

    def _merge_back(self, batch: dict[RowKey, list[int]]) -> None:
        current = self._batch
        for row_key, counts in batch.items():
            into = current.get(row_key)
            if into is None:
                current[row_key] = counts
            else:
                for i, n in enumerate(counts):
                    into[i] += n

    def _fault(self, exc: BaseException, op: str) -> None:
        level = logging.DEBUG if self._failing else logging.WARNING
        self._failing = True
        log.log(
            level,
            "usage ledger: %s to %r failed (%s: %s); keeping %d rows in memory, retrying",
            op,
            self._store,
            type(exc).__name__,
            exc,
            len(self._batch),
        )

    # -- reading --------------------------------------------------------------------

    async def report(
        self,
        *,
        by: Sequence[str] = ("model",),
        since: str | None = None,
        until: str | None = None,
        where: Mapping[str, str] | None = None,
    ) -> list[SpendRow]:
        """Spend grouped by the dimensions ``by`` (a subset of :data:`DIMENSIONS`;
        a single name may be given as a str), over the days ``since`` .. ``until``
        (inclusive ``YYYY-MM-DD``; ``None`` is open-ended), keeping the rows that
        match every ``where`` item (e.g. ``{"tenant": "acme"}``). Includes the rows
        not flushed yet. Sorted by ``cost_usd`` descending, then by group.
        A failure to read the store raises (the store's own error)."""
        dims = check_by(by)
        since = check_day(since, "since")
        until = check_day(until, "until")
        if since is not None and until is not None and since > until:
            raise ConfigError(f"since ({since!r}) is after until ({until!r})")
        filters = check_where(where)
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        async with self._lock:  # no flush in flight: store + batch counts every row once
            await self._open()
            stored = await self._store.read(since=since, until=until)
            pending = [
                (row, dict(zip(COUNTERS, counts, strict=True)))
                for row, counts in self._batch.items()
                if (since is None or row[0] >= since) and (until is None or row[0] <= until)
            ]
        picks = [DIMENSIONS.index(d) for d in dims]
        groups: dict[tuple[str, ...], list[int]] = {}
        for row, counters in _chain(stored, pending):
            if any(row[i] != value for i, value in filters):
                continue
            group = tuple(row[i] for i in picks)
            acc = groups.get(group)
            if acc is None:
                acc = groups[group] = [0] * len(COUNTERS)
            for i, name in enumerate(COUNTERS):
                acc[i] += counters.get(name, 0)
        ordered = sorted(groups.items(), key=lambda item: (-item[1][COL_COST], item[0]))
        return [spend_row(dict(zip(dims, group, strict=True)), c) for group, c in ordered]


def _chain(
    *parts: Iterable[tuple[RowKey, dict[str, int]]],
) -> Iterable[tuple[RowKey, dict[str, int]]]:
    for part in parts:
        yield from part


def open_ledger_store(url: str, *, prefix: str = "hp:") -> LedgerStore:
    """The store a URL names: ``memory://``; ``sqlite:///relative/usage.db`` or
    ``sqlite:////absolute/usage.db``; ``redis://``, ``rediss://`` or ``unix://``
    (keys under ``prefix``). Nothing is opened or connected here."""
    if not isinstance(url, str):
        raise ConfigError(f"url must be a str, got {type(url).__name__} {short_repr(url)}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        if url.lower() != "memory://":
            raise ConfigError(f"url: a memory store takes no host or path, got {url!r}")
        return stores.MemoryLedgerStore()
    if scheme == "sqlite":
        if parts.netloc or parts.query or not parts.path.startswith("/") or len(parts.path) < 2:
            raise ConfigError(
                "url must be sqlite:///relative/usage.db or sqlite:////absolute/usage.db, "
                f"got {url!r}"
            )
        return stores.SqliteLedgerStore(unquote(parts.path[1:]))
    if scheme in ("redis", "rediss", "unix"):
        return stores.RedisLedgerStore(url, prefix=prefix)
    raise ConfigError(
        f"url {short_repr(redact(url))}: unknown scheme {scheme!r}; "
        "known: memory://, sqlite:///path, redis://, rediss://, unix://"
    )
