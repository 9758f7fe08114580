"""WAL checkpoints on a thread of their own, off the caller's event loop.

SQLite checkpoints a WAL automatically from the write that carries it past
``wal_autocheckpoint`` pages, fsyncs included: measured in the gateway, that held
its event loop 3-9 ms once every ~170 writes, and the request in flight with it.
The SQLite tier therefore raises the automatic threshold to a backstop
(``BACKSTOP_PAGES``, in case this thread cannot keep up) and asks this thread for a
passive checkpoint every ``every`` writes. sqlite3 releases the GIL while SQLite
works, so the checkpoint's I/O runs beside the loop instead of inside it.

The thread starts with the first checkpoint it is asked for (nothing at import
or construction time) and stops at :meth:`Checkpointer.close`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

__all__ = ["BACKSTOP_PAGES", "Checkpointer"]

log = logging.getLogger("hotpath.cache")

BACKSTOP_PAGES: Final = 10_000


class Checkpointer:
    """Calls ``checkpoint()`` on its own thread once per ``every`` calls of :meth:`wrote`."""

    __slots__ = ("_checkpoint", "_every", "_lock", "_stop", "_thread", "_wake", "_writes", "done")

    def __init__(self, checkpoint: Callable[[], None], every: int) -> None:
        self._checkpoint = checkpoint
        self._every = every
        self._writes = 0
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = False
        self.done = 0  # checkpoints run, for stats and tests

    def wrote(self) -> None:
        """One more write transaction committed (the hot path: a counter)."""
        self._writes += 1
        if self._writes < self._every:
            return
        self._writes = 0
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stop:
                    thread = threading.Thread(
                        target=self._run, name="hotpath-sqlite-checkpoint", daemon=True
                    )
                    thread.start()
                    self._thread = thread
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            try:
                self._checkpoint()
                self.done += 1
            except Exception:  # the thread must outlive one bad checkpoint
                log.exception("cache tier sqlite: background checkpoint failed")

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (after the checkpoint it may be running)."""
        with self._lock:
            self._stop = True
            thread, self._thread = self._thread, None
        self._wake.set()
        if thread is not None:
            thread.join(timeout)
