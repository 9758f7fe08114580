"""What every SQLite file hotpath writes shares: WAL set up safely, write transactions.

The cache's tier, the usage ledger and the gateway's key store each keep their own
file and their own connection thread; this module is the part they have in common.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator

__all__ = ["use_wal", "write_transaction"]

_WAL_RETRY = 0.005  # seconds between tries while another connection switches the mode


def use_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Put the file in WAL mode (stored in the file, so set once) and ``synchronous=NORMAL``.

    Switching a new file to WAL needs an exclusive lock and SQLite does not always wait
    for it through the busy handler: several processes opening one new file at once
    would see "database is locked" at once. So the switch is retried for up to
    ``timeout`` seconds, and done is whenever the file reads back as WAL, whichever
    connection switched it.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        else:
            if str(mode).lower() == "wal":
                break
            if time.monotonic() >= deadline:
                raise sqlite3.OperationalError(
                    f"could not switch the database to WAL: journal_mode is still {mode!r}"
                )
        time.sleep(_WAL_RETRY)
    conn.execute("PRAGMA synchronous = NORMAL")


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that takes the write lock up front (waiting up to busy_timeout).

    ``BEGIN IMMEDIATE`` rather than a deferred begin: a deferred transaction that
    reads and then writes cannot wait for the lock (SQLITE_BUSY at once), because
    waiting could deadlock with another process doing the same. Any error rolls back.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
