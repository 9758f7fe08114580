"""Serving the mock app with uvicorn: on a background thread, in the running
event loop, or in worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Self

import uvicorn

from hotpath._errors import ConfigError
from hotpath.providers.mock._app import MockApp, MockStats, RecordedRequest
from hotpath.providers.mock._config import MockConfig
from hotpath.providers.mock._http import install_cut_log_filter
from hotpath.providers.mock._tokens import warm_up

__all__ = ["CONFIG_ENV", "MockUpstream", "app_from_env", "bind", "serve", "uvicorn_config"]

#: Environment variable carrying ``MockConfig.to_json()`` to worker processes.
CONFIG_ENV = "HOTPATH_MOCK_CONFIG"
_GRACE = 1.0  # seconds in-flight requests get to finish after their connection closed


def uvicorn_config(app: Any, host: str, port: int, **extra: Any) -> uvicorn.Config:
    """The uvicorn settings the mock always runs with (fast, quiet)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        interface="asgi3",
        lifespan="off",
        access_log=False,
        log_level="warning",
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=75,  # outlive clients' idle pools: no close/reuse races
        **{"log_config": None, **extra},  # leave logging alone unless asked
    )


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


def app_from_env() -> MockApp:
    """ASGI app factory for uvicorn worker processes: config from :data:`CONFIG_ENV`."""
    install_cut_log_filter()
    warm_up()
    return MockApp(MockConfig.from_json(os.environ.get(CONFIG_ENV, "{}")))


class _Server(uvicorn.Server):
    """uvicorn's server, stopping promptly: it is woken instead of polling every
    100 ms, closes every connection at once (hung requests included), and never
    touches signal handlers (its owner does)."""

    def __init__(
        self, config: uvicorn.Config, on_started: Callable[[], None] | None = None
    ) -> None:
        super().__init__(config)
        self._on_started = on_started
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        warm_up()
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


class MockUpstream:
    """The mock upstream LLM server.

    Run it on a background thread (``with MockUpstream(config) as mock:`` or
    :meth:`start_in_thread` / :meth:`stop`) or in the running event loop
    (``async with MockUpstream(config) as mock:``). ``port=0`` picks a free port;
    :attr:`port` and :attr:`url` are known once started.
    """

    def __init__(
        self,
        config: MockConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_recorded: int = 1000,
    ) -> None:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ConfigError(f"MockUpstream.port: expected an int in [0, 65535], got {port!r}")
        if not isinstance(host, str) or not host:
            raise ConfigError(f"MockUpstream.host: expected a host name or address, got {host!r}")
        if not isinstance(max_recorded, int) or max_recorded < 0:
            raise ConfigError(
                f"MockUpstream.max_recorded: expected an int >= 0, got {max_recorded!r}"
            )
        self._app = MockApp(config, max_recorded=max_recorded)
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        state = "running" if self._server is not None else "stopped"
        return f"<MockUpstream {state} {self.origin}>"

    @property
    def app(self) -> MockApp:
        """The ASGI application (usable without a server, e.g. by an ASGI transport)."""
        return self._app

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The listening port (the requested one until started)."""
        return self._port

    @property
    def origin(self) -> str:
        """``http://HOST:PORT``: the base URL for Anthropic clients."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    @property
    def url(self) -> str:
        """``http://HOST:PORT/v1``: the ``base_url`` for OpenAI clients."""
        return f"{self.origin}/v1"

    @property
    def config(self) -> MockConfig:
        return self._app.config

    def set_config(self, config: MockConfig) -> None:
        """Change the behaviour for the next requests (re-seeds the RNG)."""
        self._app.set_config(config)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the most recent requests (the last ``max_recorded``),
        oldest first. Safe to take while the server runs."""
        return list(self._app.requests)

    def stats(self) -> MockStats:
        return self._app.stats()

    def reset(self) -> None:
        """Zero the counters, forget recorded requests, re-seed the RNG."""
        self._app.reset()

    def wait_for(self, predicate: Callable[[MockStats], bool], timeout: float = 5.0) -> MockStats:
        """Block until ``predicate(stats())`` holds (``TimeoutError`` after *timeout*
        seconds); e.g. ``mock.wait_for(lambda s: s.cancelled == 1)``. Not for use
        on the server's own event loop."""
        return self._app.wait_for(predicate, timeout)

    def _new_server(self, on_started: Callable[[], None] | None) -> tuple[_Server, socket.socket]:
        if self._server is not None:
            raise RuntimeError(f"{self!r} is already running")
        install_cut_log_filter()
        sock = bind(self._host, self._port)
        self._port = sock.getsockname()[1]
        server = _Server(uvicorn_config(self._app, self._host, self._port), on_started)
        self._server = server
        return server, sock

    def start_in_thread(self, timeout: float = 10.0) -> Self:
        """Serve on a new daemon thread with its own uvloop; return once listening."""
        started = threading.Event()
        server, sock = self._new_server(started.set)
        failure: list[BaseException] = []

        def target() -> None:
            try:
                with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
                    runner.run(server.serve(sockets=[sock]))
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                failure.append(exc)
            finally:
                sock.close()
                started.set()

        self._thread = threading.Thread(
            target=target, name=f"hotpath-mock-{self._port}", daemon=True
        )
        self._thread.start()
        if not started.wait(timeout) or failure or not server.started:
            self.stop(timeout)
            if failure:
                raise RuntimeError(f"mock upstream failed to start on {self.origin}") from failure[
                    0
                ]
            raise RuntimeError(f"mock upstream did not start within {timeout} s on {self.origin}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the background-thread server (in-flight requests are cut off)."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.request_exit()
        thread.join(timeout)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start_in_thread()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @contextlib.contextmanager
    def running(self) -> Iterator[Self]:
        """``with MockUpstream(...).running() as mock:``, the same as ``with MockUpstream(...)``."""
        with self:
            yield self

    async def start(self) -> Self:
        """Serve in the running event loop; return once listening."""
        started = asyncio.Event()
        server, sock = self._new_server(started.set)

        async def run() -> None:
            try:
                await server.serve(sockets=[sock])
            finally:
                sock.close()
                started.set()

        self._task = asyncio.create_task(run())
        await started.wait()
        if not server.started:
            await self.aclose()
            raise RuntimeError(f"mock upstream failed to start on {self.origin}")
        return self

    async def aclose(self) -> None:
        """Stop the in-loop server started by :meth:`start`."""
        server, task = self._server, self._task
        if server is None or task is None:
            return
        server.request_exit()
        try:
            await task
        finally:
            self._server = self._task = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def serve(
    config: MockConfig | None = None, host: str = "127.0.0.1", port: int = 9000
) -> None:
    """Serve a mock upstream in the running loop until cancelled."""
    async with MockUpstream(config, host=host, port=port):
        await asyncio.Event().wait()
