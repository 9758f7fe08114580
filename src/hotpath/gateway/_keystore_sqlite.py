"""Gateway key records in one SQLite file (see :mod:`hotpath.gateway._keystore`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from hotpath._errors import ConfigError, short_repr
from hotpath._options import check_positive
from hotpath._sqlite import use_wal, write_transaction
from hotpath.cache._urls import parse_float, parse_options
from hotpath.gateway._keystore import (
    KeyExistsError,
    KeyRecord,
    KeyStoreError,
    decode_records,
    revoked_record,
)

__all__ = ["SqliteKeyStore"]

T = TypeVar("T")

# -- SQLite -------------------------------------------------------------------------------

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS gateway_keys (
        name   TEXT PRIMARY KEY,
        sha256 TEXT NOT NULL UNIQUE,
        record TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS gateway_keys_meta (
        id      INTEGER PRIMARY KEY CHECK (id = 1),
        version INTEGER NOT NULL)""",
    "INSERT OR IGNORE INTO gateway_keys_meta(id, version) VALUES (1, 0)",
)
_BUMP = "UPDATE gateway_keys_meta SET version = version + 1 WHERE id = 1"


class SqliteKeyStore:
    """Key records in one SQLite file (see the module docstring).

    ``busy_timeout`` bounds how long a write waits for another process's write lock.
    Reads never wait for writers (WAL).
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        if not isinstance(path, str | Path) or not str(path) or str(path) == ":memory:":
            raise ConfigError(f"path must name a database file, got {short_repr(path)}")
        self.path = Path(path)
        self.busy_timeout = check_positive(busy_timeout, "busy_timeout")
        self._conn: sqlite3.Connection | None = None
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None

    @classmethod
    def from_url(cls, url: str) -> SqliteKeyStore:
        """``sqlite:///relative/keys.db`` or ``sqlite:////absolute/keys.db``."""
        parts = urlsplit(url)
        if parts.scheme.lower() != "sqlite" or parts.netloc or len(parts.path) < 2:
            raise ConfigError(
                f"key store URL must be sqlite:///relative.db or sqlite:////abs.db, got {url!r}"
            )
        options = parse_options(url, {"busy_timeout": parse_float})
        return cls(unquote(parts.path[1:]), **options)

    def __repr__(self) -> str:
        return f"SqliteKeyStore({str(self.path)!r}, busy_timeout={self.busy_timeout!r})"

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    async def open(self) -> None:
        await self._run("open", lambda conn: None)

    async def create(self, record: KeyRecord) -> None:
        def create(conn: sqlite3.Connection) -> None:
            with write_transaction(conn):
                if conn.execute(
                    "SELECT 1 FROM gateway_keys WHERE name = ?", (record.name,)
                ).fetchone():
                    raise KeyExistsError(f"a key named {record.name!r} already exists")
                try:
                    conn.execute(
                        "INSERT INTO gateway_keys(name, sha256, record) VALUES (?, ?, ?)",
                        (record.name, record.sha256, record.to_json().decode()),
                    )
                except sqlite3.IntegrityError:
                    raise KeyExistsError(
                        f"key {record.name!r}: a key with the same secret already exists"
                    ) from None
                conn.execute(_BUMP)

        await self._run("create", create)

    async def all(self) -> list[KeyRecord]:
        rows = await self._run(
            "all", lambda conn: conn.execute("SELECT name, record FROM gateway_keys").fetchall()
        )
        return decode_records(rows, self.url)

    async def revoke(self, name: str, *, at: float) -> KeyRecord | None:
        def revoke(conn: sqlite3.Connection) -> KeyRecord | None:
            with write_transaction(conn):
                row = conn.execute(
                    "SELECT record FROM gateway_keys WHERE name = ?", (name,)
                ).fetchone()
                if row is None:
                    return None
                record = KeyRecord.from_json(row[0])
                if record.revoked:
                    return record
                record = revoked_record(record, at)
                conn.execute(
                    "UPDATE gateway_keys SET record = ? WHERE name = ?",
                    (record.to_json().decode(), name),
                )
                conn.execute(_BUMP)
                return record

        return await self._run("revoke", revoke)

    async def version(self) -> int:
        row = await self._run(
            "version",
            lambda conn: conn.execute(
                "SELECT version FROM gateway_keys_meta WHERE id = 1"
            ).fetchone(),
        )
        return int(row[0])

    async def aclose(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        with contextlib.suppress(sqlite3.Error, RuntimeError):
            await asyncio.get_running_loop().run_in_executor(thread, self._close)
        thread.shutdown(wait=False)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def _run(self, op: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` on the store's thread; backend faults as KeyStoreError."""
        if self._thread is None:
            self._thread = concurrent.futures.ThreadPoolExecutor(1, "hotpath-keystore")
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._thread, lambda: fn(self._connection())
            )
        except (sqlite3.Error, OSError) as exc:
            if not isinstance(exc, sqlite3.OperationalError) or "locked" not in str(exc):
                # Reconnect on the next call: the file may have been replaced or repaired.
                await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
            raise KeyStoreError(f"key store {self.url}: {op} failed: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        """The store thread's connection, opened (and the schema made) on first use."""
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
            try:
                use_wal(conn, self.busy_timeout)
                with write_transaction(conn):
                    for statement in _SCHEMA:
                        conn.execute(statement)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn
