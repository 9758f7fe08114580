"""Headless Chromium for tests, driven over the DevTools protocol (aiohttp's
websocket client): open a page, wait until a script condition holds, take a
screenshot and the DOM, and collect the console's errors.

Debian's ``chromium`` package is enough; ``scripts/ensure-chromium`` installs it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

__all__ = ["Capture", "capture", "chromium_binary"]

_READY_WITHIN = 30.0  # seconds for a page's ready condition to hold


def chromium_binary() -> str:
    """The Chromium binary. A test that needs it is skipped only where it cannot
    be installed (not root) and is not there; as root its absence is a failure
    (``make test`` installs it: scripts/ensure-chromium)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.geteuid() != 0:
        pytest.skip("headless Chromium is not installed (apt-get install chromium)")
    pytest.fail("Chromium is missing: run 'bash scripts/ensure-chromium' (make test does)")


@dataclass
class Capture:
    """What a page showed: its DOM, a PNG screenshot, and the console's errors
    (uncaught exceptions, Content-Security-Policy refusals, failed loads)."""

    dom: str = ""
    png: bytes = b""
    errors: list[str] = field(default_factory=list)


class _Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, errors: list[str]) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._errors = errors
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for message in self._ws:
            data = message.json()
            if "id" in data:
                future = self._waiting.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
                continue
            method, params = data.get("method"), data.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                text = details.get("exception", {}).get("description") or details.get("text")
                self._errors.append(f"exception: {text}")
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                self._errors.append(f"{params['entry']['source']}: {params['entry']['text']}")
            elif method == "Runtime.consoleAPICalled" and params["type"] == "error":
                self._errors.append(f"console: {params['args']}")

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[number] = future
        await self._ws.send_json({"id": number, "method": method, "params": params})
        answer = await asyncio.wait_for(future, 30)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def _browser(binary: str) -> AsyncIterator[str]:
    """A headless Chromium; yields its DevTools HTTP address."""
    profile = Path(tempfile.mkdtemp(prefix="hp-chromium-"))
    process = await asyncio.create_subprocess_exec(
        binary,
        "--headless",
        "--no-sandbox",  # as root, Chromium refuses to start with its sandbox
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        address = None
        async with asyncio.timeout(30):
            while address is None:
                line = (await process.stderr.readline()).decode(errors="replace")
                if not line:
                    raise RuntimeError("Chromium exited before opening DevTools")
                found = re.search(r"DevTools listening on ws://([^/]+)/", line)
                address = found.group(1) if found else None
        # Keep reading stderr so that Chromium never blocks on a full pipe.
        drain = asyncio.get_running_loop().create_task(process.stderr.read())
        yield f"http://{address}"
        drain.cancel()
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def capture(
    url: str,
    *,
    size: tuple[int, int],
    ready: str,
    binary: str | None = None,
    sign_in: str | None = None,
) -> Capture:
    """Open ``url`` at ``size`` (CSS pixels), wait until the JavaScript
    expression ``ready`` is true (30 s at most), then take the DOM and a
    screenshot. With ``sign_in``, the page is first a sign-in form: its ``key``
    field is filled with that and the form sent, as a person would."""
    out = Capture()
    async with _browser(binary or chromium_binary()) as http, aiohttp.ClientSession() as session:
        async with session.get(f"{http}/json/list") as answer:
            targets = await answer.json()
        [target] = [t for t in targets if t["type"] == "page"]
        async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            page = _Page(ws, out.errors)
            try:
                for domain in ("Page", "Runtime", "Log"):
                    await page.call(f"{domain}.enable")
                await page.call(
                    "Emulation.setDeviceMetricsOverride",
                    width=size[0],
                    height=size[1],
                    deviceScaleFactor=1,
                    mobile=False,
                )
                await page.call("Page.navigate", url=url)
                if sign_in is not None:
                    await _sign_in(page, sign_in)
                    # The sign-in page is a 401 by design, which the browser logs as
                    # a failed load; what counts is what happens from here on.
                    out.errors[:] = [e for e in out.errors if _SIGN_IN_401 not in e]
                async with asyncio.timeout(_READY_WITHIN):
                    while not await page.evaluate(f"Boolean({ready})"):
                        await asyncio.sleep(0.1)
                out.dom = await page.evaluate("document.documentElement.outerHTML")
                shot = await page.call("Page.captureScreenshot", format="png")
                out.png = base64.b64decode(shot["data"])
            finally:
                await page.close()
    return out


_SIGN_IN_401 = "the server responded with a status of 401"


async def _sign_in(page: _Page, key: str) -> None:
    """Fill the sign-in form's key field and send the form."""
    field = "document.getElementById('key')"
    async with asyncio.timeout(_READY_WITHIN):
        while not await page.evaluate(f"Boolean({field})"):
            await asyncio.sleep(0.1)
    await page.evaluate(
        f"{field}.value = {json.dumps(key)}; document.getElementById('login').requestSubmit()"
    )
