"""Serve an ASGI app from a background thread: for tests, the demo and benchmarks.

uvicorn (uvloop + httptools) runs on a thread of its own with its own event loop;
:meth:`BackgroundServer.start` returns once the socket listens, :meth:`stop` shuts
it down gracefully (lifespan shutdown included) and joins the thread.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from types import TracebackType
from typing import Any, Literal

import uvicorn

__all__ = ["BackgroundServer"]


class BackgroundServer:
    """``with BackgroundServer(app) as server: server.url``; port 0 picks a free port."""

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        lifespan: Literal["auto", "on", "off"] = "on",
        start_timeout: float = 20.0,
    ) -> None:
        self.app = app
        self.host = host
        self._requested_port = port
        self._lifespan = lifespan
        self._start_timeout = start_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port = port

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> BackgroundServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(
            self.app,
            loop="uvloop",
            http="httptools",
            lifespan=self._lifespan,
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)
        self._server = server
        failed: list[BaseException] = []

        def run() -> None:
            try:
                import uvloop

                runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
            except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
                runner = asyncio.Runner()
            with runner:
                self.loop = runner.get_loop()
                try:
                    runner.run(server.serve(sockets=[sock]))
                except BaseException as exc:  # noqa: BLE001 - reported to start()
                    failed.append(exc)

        thread = threading.Thread(target=run, name=f"asgi-{self.port}", daemon=True)
        self._thread = thread
        thread.start()
        # uvicorn offers no start-up callback to a caller on another thread: poll.
        pause = threading.Event()
        for _ in range(int(self._start_timeout / 0.005)):
            if server.started or failed or not thread.is_alive():
                break
            pause.wait(0.005)
        if not server.started:
            self.stop()
            raise RuntimeError(f"the server on port {self.port} did not start: {failed!r}")
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=15)
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._server = self._thread = None

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self, tp: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
