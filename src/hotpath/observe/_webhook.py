"""Alerts as JSON POSTs to a webhook, in the background: a slow or failing
receiver never holds a request; a delivery that fails is logged and counted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["Webhook"]

log = logging.getLogger("hotpath.observe")

_MAX_PENDING = 100  # deliveries in flight; beyond that an alert is dropped (and logged)


class Webhook:
    """POSTs to ``url`` with a ``timeout``; ``on_failure`` is called once per
    delivery that failed (e.g. to count it in a metric)."""

    def __init__(
        self, url: str, *, timeout: float = 5.0, on_failure: Callable[[], None] | None = None
    ) -> None:
        self.url = url
        self._timeout = timeout
        self._on_failure = on_failure
        self._session: Any = None  # an aiohttp session, made on the first delivery
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, payload: dict[str, Any]) -> None:
        """Deliver ``payload`` in the background."""
        if len(self._tasks) >= _MAX_PENDING:
            log.warning(
                "alert webhook %s: %d deliveries pending, one dropped", self.url, len(self._tasks)
            )
            self._failed()
            return
        task = asyncio.get_running_loop().create_task(self._post(orjson.dumps(payload)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, body: bytes) -> None:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout)
            )
        try:
            async with self._session.post(
                self.url, data=body, headers={"content-type": "application/json"}
            ) as response:
                if response.status >= 300:
                    raise RuntimeError(f"status {response.status}")
        except Exception as exc:  # noqa: BLE001 - an alert that cannot go is logged
            log.warning("alert webhook %s failed: %s", self.url, exc)
            self._failed()

    def _failed(self) -> None:
        if self._on_failure is not None:
            self._on_failure()

    async def aclose(self) -> None:
        """Wait (up to the timeout) for deliveries under way, cancel those still
        going, then close."""
        if self._tasks:
            _, late = await asyncio.wait(list(self._tasks), timeout=self._timeout)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        if self._session is not None:
            await self._session.close()
            self._session = None
