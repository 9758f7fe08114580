"""Serving an ASGI app with uvicorn from inside a program: the gateway in tests and
the demo, the mock upstream everywhere.

:class:`PromptServer` is uvicorn's server made to start and stop on cue: it
reports "listening" through a callback instead of being polled, is woken to stop
instead of checking a flag every 100 ms, closes every connection at once (hung
requests included, after a short grace) and leaves signal handlers to its owner.
:class:`BackgroundServer` runs one on a thread of its own with its own uvloop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Self, TypeVar

import uvicorn

__all__ = ["FAST", "BackgroundServer", "PromptServer", "bind", "uvicorn_config"]

T = TypeVar("T")

_GRACE = 1.0  # seconds in-flight requests get to finish after their connection closed


#: uvicorn settings for a fast, quiet server: uvloop and httptools (chosen by
#: measurement, docs/gateway.md), no access log, no proxy-header parsing.
FAST: dict[str, Any] = {
    "loop": "uvloop",
    "http": "httptools",
    "lifespan": "on",
    "access_log": False,
    "log_level": "warning",
    "proxy_headers": False,
}


def uvicorn_config(app: Any, host: str, port: int, **options: Any) -> uvicorn.Config:
    """:data:`FAST` settings for ``app``; ``options`` override them."""
    return uvicorn.Config(app, host=host, port=port, **{**FAST, **options})


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on *host*:*port* (0 picks a free port)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    return sock


class PromptServer(uvicorn.Server):
    """uvicorn's server, started and stopped on cue (see the module docstring)."""

    def __init__(
        self, config: uvicorn.Config, on_started: Callable[[], None] | None = None
    ) -> None:
        super().__init__(config)
        self._on_started = on_started
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop serving, once started."""
        return self._loop

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        await super().startup(sockets=sockets)
        if self.started and self._on_started is not None:
            self._on_started()

    def request_exit(self) -> None:
        """Ask the server to stop; callable from any thread."""
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop just closed
                loop.call_soon_threadsafe(wake.set)

    async def main_loop(self) -> None:
        counter = 0
        wake = self._wake or asyncio.Event()
        while not await self.on_tick(counter):
            counter += 10  # on_tick refreshes the Date header every 10th tick
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), 1.0)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.close()
        tasks = set(self.server_state.tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=_GRACE)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        for server in self.servers:
            await server.wait_closed()
        if not self.force_exit:
            await self.lifespan.shutdown()  # the app closes its clients and caches


class BackgroundServer:
    """``with BackgroundServer(app) as server: server.base``; ``port=0`` picks a free
    port. ``options`` are uvicorn settings (see :func:`uvicorn_config`)."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0, **options: Any):
        self.app = app
        self.host = host
        self.port = port
        self._options = options
        self._server: PromptServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        """``http://HOST:PORT``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self, timeout: float = 20.0) -> Self:
        """Serve on a new daemon thread; return once listening."""
        if self._server is not None:
            raise RuntimeError(f"the server on {self.base} is already running")
        sock = bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        started = threading.Event()
        config = uvicorn_config(self.app, self.host, self.port, **self._options)
        server = PromptServer(config, started.set)
        self._server = server
        failure: list[BaseException] = []

        def target() -> None:
            try:
                with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
                    runner.run(server.serve(sockets=[sock]))
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                failure.append(exc)
            finally:
                sock.close()
                started.set()

        self._thread = threading.Thread(target=target, name=f"asgi-{self.port}", daemon=True)
        self._thread.start()
        if not started.wait(timeout) or failure or not server.started:
            self.stop(timeout)
            if failure:
                raise RuntimeError(f"the server on {self.base} failed to start") from failure[0]
            raise RuntimeError(f"the server on {self.base} did not start within {timeout} s")
        return self

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn`` on the server's event loop (where the app's state lives) and
        return its result: for work that must not race the requests being served."""
        server = self._server
        loop = server.loop if server is not None else None
        if loop is None:
            raise RuntimeError(f"the server on {self.base} is not running")

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server (in-flight requests get a short grace) and join its thread."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.request_exit()
        thread.join(timeout)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, tp: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
