"""What one gateway process knows of the stored keys.

The request path looks keys up by digest in a dict (no I/O); a background task
asks the store for its version every ``interval`` seconds and reloads every
record only when the version changed, so a key revoked through any replica stops
working on all of them within about ``interval`` plus one load.

When the store cannot be reached the directory keeps the keys it loaded last: a
Redis blip must not lock every client out. The cost is that a key revoked during
the outage keeps working here until the store is back. Writes (``create``,
``revoke``) are not retried or queued: their :class:`KeyStoreError` goes to the
caller (the admin API answers 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from hotpath._clock import Clock, SystemClock
from hotpath._errors import ConfigError
from hotpath._options import check_positive
from hotpath.gateway._keystore import (
    KeyRecord,
    KeyStore,
    KeyStoreError,
    Period,
    key_record,
    new_key_secret,
)

__all__ = ["KeyDirectory", "KeyDirectoryStats"]

log = logging.getLogger("hotpath.gateway")


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyDirectoryStats:
    """``loads``: full reloads of the records (the first included); ``poll_failures``:
    polls or reloads that could not reach the store; ``last_error``: the last such
    failure; ``healthy``: the last poll reached the store; ``keys``: live keys known."""

    loads: int
    poll_failures: int
    last_error: str | None
    healthy: bool
    keys: int


class KeyDirectory:
    """What one gateway process knows of the stored keys: looked up by sha256 without
    I/O, refreshed when the store's version changes.

    ``clock.now()`` stamps ``created_at`` and ``revoked_at``. ``on_change()`` is called
    after the view changed (a reload, or this process's own create or revoke); the
    gateway clears its authentication cache there.
    """

    def __init__(
        self,
        store: KeyStore,
        *,
        interval: float = 0.25,
        clock: Clock | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        if on_change is not None and not callable(on_change):
            raise ConfigError(f"on_change must be callable or None, got {on_change!r}")
        self._store = store
        self.interval = check_positive(interval, "interval")
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._on_change = on_change
        self._records: list[KeyRecord] = []
        self._by_sha: dict[str, KeyRecord] = {}
        self._version: int | None = None  # None: never loaded
        self._lock = asyncio.Lock()  # one load at a time, so an older one never wins
        self._task: asyncio.Task[None] | None = None
        self._loads = 0
        self._poll_failures = 0
        self._last_error: str | None = None
        self._failing = False

    def __repr__(self) -> str:
        return f"KeyDirectory({self._store!r}, interval={self.interval!r})"

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, load every record, then poll in a background task.

        Raises :class:`KeyStoreError` naming the store's URL if the first load fails:
        a gateway must not start with no idea of its keys.
        """
        if self._task is not None:
            raise RuntimeError(f"{self!r} is already started")
        try:
            await self._store.open()
            async with self._lock:
                await self._load_if_changed()
        except KeyStoreError as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            raise KeyStoreError(
                f"cannot load the gateway keys from {self._store.url}: {cause}"
            ) from exc
        self._task = asyncio.create_task(self._poll(), name="hotpath-key-directory")

    async def aclose(self) -> None:
        """Stop polling and close the store."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._store.aclose()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except Exception:  # a bug must not stop the polling for good
                log.exception("gateway keys: refresh from %s failed", self._store.url)

    # -- reads --------------------------------------------------------------------------

    def lookup(self, sha256: str) -> KeyRecord | None:
        """The live (not revoked) key whose secret has this SHA-256, if any."""
        return self._by_sha.get(sha256)

    @property
    def records(self) -> list[KeyRecord]:
        """Every key loaded, revoked ones included, oldest first."""
        return list(self._records)

    def stats(self) -> KeyDirectoryStats:
        return KeyDirectoryStats(
            loads=self._loads,
            poll_failures=self._poll_failures,
            last_error=self._last_error,
            healthy=not self._failing,
            keys=len(self._by_sha),
        )

    async def refresh(self) -> bool:
        """Poll the store once now; True if the records were reloaded.

        A store fault is counted and logged, not raised: the keys loaded last stay.
        """
        async with self._lock:
            try:
                reloaded = await self._load_if_changed()
            except KeyStoreError as exc:
                self._poll_failures += 1
                self._last_error = str(exc)
                if not self._failing:
                    self._failing = True
                    log.warning(
                        "gateway keys: cannot reach the key store (%s); "
                        "serving the %d keys loaded last",
                        exc,
                        len(self._by_sha),
                    )
                return False
        if self._failing:
            self._failing = False
            log.info("gateway keys: the key store %s is reachable again", self._store.url)
        return reloaded

    async def _load_if_changed(self) -> bool:
        """Reload if the store's version moved (the caller holds the lock)."""
        # The version is read before the records: the records are then at least as new
        # as the version kept, and a write in between only causes one more reload.
        version = await self._store.version()
        if version == self._version:
            return False
        records = await self._store.all()
        self._records = records
        self._by_sha = {r.sha256: r for r in records if not r.revoked}
        self._version = version
        self._loads += 1
        self._changed()
        return True

    # -- writes -------------------------------------------------------------------------

    async def create(
        self,
        *,
        name: str,
        tenant: str,
        rpm: int | None = None,
        tpm: int | None = None,
        budget_usd: float | None = None,
        budget_period: Period = "month",
    ) -> tuple[KeyRecord, str]:
        """Make a key and store it: ``(record, secret)``. The secret is not kept
        anywhere; show it once. :class:`ConfigError` for a bad field (before any
        I/O), :class:`KeyExistsError` for a name taken, :class:`KeyStoreError` if
        the store cannot be written."""
        secret = new_key_secret()
        record = key_record(
            name=name,
            tenant=tenant,
            secret=secret,
            created_at=self._clock.now(),
            rpm=rpm,
            tpm=tpm,
            budget_usd=budget_usd,
            budget_period=budget_period,
        )
        await self._store.create(record)
        await self._apply(record)
        return record, secret

    async def revoke(self, name: str) -> KeyRecord | None:
        """Revoke key ``name`` in the store and here at once; the revoked record, or
        None if there is no such key. Revoking a revoked key changes nothing."""
        record = await self._store.revoke(name, at=self._clock.now())
        if record is not None:
            await self._apply(record)
        return record

    async def _apply(self, record: KeyRecord) -> None:
        """Put our own write into the view now, even if the reload that follows fails
        (a key revoked here must stop working here)."""
        async with self._lock:  # after any load in flight, which may predate the write
            records = [r for r in self._records if r.name != record.name]
            records.append(record)
            records.sort(key=lambda r: (r.created_at, r.name))
            by_sha = {r.sha256: r for r in records if not r.revoked}
            self._records, self._by_sha = records, by_sha
            self._changed()
        await self.refresh()

    def _changed(self) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change()
        except Exception:  # the view is updated; the hook's bug is its own
            log.exception("gateway keys: on_change hook failed")
