"""Running a coroutine to completion on uvloop (the default loop where uvloop is
missing): for the command lines that drive HTTP load, the demo and ``hotpath bench``."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run"]

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)`` on a uvloop event loop."""
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        runner = asyncio.Runner()
    with runner:
        return runner.run(coro)
