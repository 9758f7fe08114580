"""The SQLite tier's file: schema, statements, transactions, eviction and recovery.

Plain functions over a ``sqlite3.Connection``; the tier (``_sqlite``) owns the
connections, the clock, the counters and the health state.

Schema (version 1, in ``PRAGMA user_version``)::

    entries(key TEXT PRIMARY KEY, value BLOB, expires_at REAL NULL,
            written_at REAL, hits INTEGER, size INTEGER)
        entries_expiry (expires_at) WHERE expires_at IS NOT NULL   -- purge
        entries_value  (hits, written_at)                          -- eviction, hottest
    tags(tag, key) PRIMARY KEY (tag, key) WITHOUT ROWID
        tags_by_key (key)
    meta(id = 1, entries, bytes)                                   -- kept by triggers

The triggers update ``meta`` and drop a deleted entry's tag links inside the
transaction that changes ``entries``, so the totals are exact with any number of
processes writing, and reading them is one primary-key look-up.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Final

from hotpath._sqlite import write_transaction

__all__ = [
    "IncompatibleSchema",
    "evict",
    "file_identity",
    "init_schema",
    "is_corrupt",
    "move_aside",
    "purge_expired",
]

SCHEMA_VERSION: Final = 1
_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS entries (
        key        TEXT PRIMARY KEY,
        value      BLOB NOT NULL,
        expires_at REAL,
        written_at REAL NOT NULL,
        hits       INTEGER NOT NULL DEFAULT 0,
        size       INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS entries_expiry ON entries(expires_at) WHERE expires_at IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS entries_value ON entries(hits, written_at)",
    """CREATE TABLE IF NOT EXISTS tags (
        tag TEXT NOT NULL,
        key TEXT NOT NULL,
        PRIMARY KEY (tag, key)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS tags_by_key ON tags(key)",
    """CREATE TABLE IF NOT EXISTS meta (
        id      INTEGER PRIMARY KEY CHECK (id = 1),
        entries INTEGER NOT NULL,
        bytes   INTEGER NOT NULL)""",
    "INSERT OR IGNORE INTO meta(id, entries, bytes) VALUES (1, 0, 0)",
    """CREATE TRIGGER IF NOT EXISTS entries_insert AFTER INSERT ON entries BEGIN
        UPDATE meta SET entries = entries + 1, bytes = bytes + new.size WHERE id = 1;
    END""",
    """CREATE TRIGGER IF NOT EXISTS entries_resize AFTER UPDATE OF size ON entries BEGIN
        UPDATE meta SET bytes = bytes - old.size + new.size WHERE id = 1;
    END""",
    """CREATE TRIGGER IF NOT EXISTS entries_delete AFTER DELETE ON entries BEGIN
        UPDATE meta SET entries = entries - 1, bytes = bytes - old.size WHERE id = 1;
        DELETE FROM tags WHERE key = old.key;
    END""",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

GET: Final = "SELECT value, expires_at FROM entries WHERE key = ?"
META: Final = "SELECT entries, bytes FROM meta WHERE id = 1"
UPSERT: Final = (
    "INSERT INTO entries(key, value, expires_at, written_at, size) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at, "
    "written_at = excluded.written_at, size = excluded.size"
)
DELETE: Final = "DELETE FROM entries WHERE key = ?"
DELETE_TAGGED: Final = "DELETE FROM entries WHERE key IN (SELECT key FROM tags WHERE tag = ?)"
UNTAG_KEY: Final = "DELETE FROM tags WHERE key = ?"
DROP_TAG: Final = "DELETE FROM tags WHERE tag = ?"
TAG: Final = "INSERT OR IGNORE INTO tags(tag, key) VALUES (?, ?)"
ADD_HITS: Final = "UPDATE entries SET hits = hits + ? WHERE key = ?"
EXPIRES_AT: Final = "SELECT expires_at FROM entries WHERE key = ?"
HOTTEST: Final = (
    "SELECT key FROM entries INDEXED BY entries_value "
    "WHERE expires_at IS NULL OR expires_at > ? ORDER BY hits DESC, written_at DESC LIMIT ?"
)
_PURGE: Final = (
    "DELETE FROM entries WHERE rowid IN (SELECT rowid FROM entries WHERE expires_at <= ? LIMIT ?)"
)
_COLDEST: Final = "SELECT key, size FROM entries INDEXED BY entries_value ORDER BY hits, written_at"

PURGE_BATCH: Final = 2000  # expired rows deleted per write transaction
EVICT_BATCH: Final = 1000  # rows evicted beyond what the bound strictly needs, per write
EVICT_TARGET: Final = 0.9  # eviction aims at this fraction of each bound
_CORRUPT_CODES: Final = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


class IncompatibleSchema(sqlite3.DatabaseError):
    """The file was written by a newer hotpath (its schema version is unknown here)."""


def is_corrupt(exc: BaseException) -> bool:
    """True for "file is not a database" and "database disk image is malformed"."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF in _CORRUPT_CODES


def init_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Create the tables, indexes and triggers unless the file has them already."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise IncompatibleSchema(
            f"{path} has schema version {version}; this hotpath knows {SCHEMA_VERSION}"
        )
    with write_transaction(conn):
        for statement in _SCHEMA:
            conn.execute(statement)


def purge_expired(conn: sqlite3.Connection, now: float, limit: int = PURGE_BATCH) -> int:
    """Delete up to ``limit`` rows expired at ``now``; how many went."""
    return max(conn.execute(_PURGE, (now, limit)).rowcount, 0)


def evict(
    conn: sqlite3.Connection, max_entries: int, max_bytes: int, now: float, fresh: Collection[str]
) -> tuple[int, int]:
    """Bring the file back within its bounds; ``(expired, evicted)`` row counts.

    Expired rows go first. Then the least valuable live rows (fewest hits, then
    oldest written): always enough to get within the bounds, and beyond that up
    to :data:`EVICT_BATCH` more towards :data:`EVICT_TARGET` of each bound, so
    evictions come in batches but no write transaction runs long. Keys in
    ``fresh`` (written by this transaction) go only if they alone overflow.
    """
    entries, nbytes = conn.execute(META).fetchone()
    if entries <= max_entries and nbytes <= max_bytes:
        return 0, 0
    expired = purge_expired(conn, now)
    entries, nbytes = conn.execute(META).fetchone()
    must_n, must_b = entries - max_entries, nbytes - max_bytes
    want_n = entries - int(max_entries * EVICT_TARGET)
    want_b = nbytes - int(max_bytes * EVICT_TARGET)
    victims: list[tuple[str]] = []
    spared: list[tuple[str, int]] = []
    cursor = conn.execute(_COLDEST)
    try:  # collect first: rows must not be deleted under a pending SELECT
        for key, size in cursor:
            if want_n <= 0 and want_b <= 0:
                break
            if must_n <= 0 and must_b <= 0 and len(victims) >= EVICT_BATCH:
                break
            if key in fresh:
                spared.append((key, size))
                continue
            victims.append((key,))
            must_n, must_b, want_n, want_b = must_n - 1, must_b - size, want_n - 1, want_b - size
    finally:
        cursor.close()
    for key, size in spared:
        if must_n <= 0 and must_b <= 0:
            break
        victims.append((key,))
        must_n, must_b = must_n - 1, must_b - size
    conn.executemany(DELETE, victims)
    return expired, len(victims)


def move_aside(path: Path, inode: tuple[int, int] | None, now: float, timeout: float) -> str | None:
    """Rename a corrupt ``path`` (and its -wal/-shm) to ``<path>.corrupt-<UTC time>``.

    Returns the new name, or ``None`` if there was nothing to move because
    another process had already moved the file (``inode`` identifies the file the
    caller found corrupt; a different file at ``path`` is a fresh one). Raises
    ``OSError`` if the rename fails, or if another process holds the recovery
    lock for longer than ``timeout`` seconds.
    """
    name = str(path)
    with _directory_lock(path.parent, timeout):
        try:
            st = os.stat(name)
        except FileNotFoundError:
            return None
        if inode is not None and (st.st_dev, st.st_ino) != inode:
            return None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        dest, n = f"{name}.corrupt-{stamp}", 1
        while os.path.exists(dest):
            dest, n = f"{name}.corrupt-{stamp}-{n}", n + 1
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(name + suffix, dest + suffix)
        return dest


def file_identity(path: Path) -> tuple[int, int] | None:
    """``(device, inode)`` of the file at ``path``, or ``None`` if it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


@contextlib.contextmanager
def _directory_lock(directory: Path, timeout: float) -> Iterator[None]:
    """Serialize recovery between processes (flock on the directory; POSIX only).

    Waits at most ``timeout`` seconds, then raises ``TimeoutError`` (an OSError).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no cross-process recovery lock
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{directory} is locked by another process") from None
                time.sleep(0.005)
        yield
    finally:
        os.close(fd)


def live_keys(conn: sqlite3.Connection, keys: Sequence[str], now: float) -> set[str]:
    """Which of ``keys`` hold an entry that has not expired at ``now``."""
    found: set[str] = set()
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT key FROM entries WHERE key IN ({marks}) "  # noqa: S608 - only ? marks
            "AND (expires_at IS NULL OR expires_at > ?)",
            (*chunk, now),
        )
        found.update(r[0] for r in rows)
    return found
