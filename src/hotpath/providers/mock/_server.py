"""Serving the mock app with uvicorn: on a background thread, in the running
event loop, or in worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Self

import uvicorn

from hotpath._background import BackgroundServer, PromptServer, bind
from hotpath._background import uvicorn_config as shared_config
from hotpath._clock import Clock
from hotpath._errors import ConfigError
from hotpath._tokens import warm_up
from hotpath.providers.mock._app import MockApp, MockStats, RecordedRequest
from hotpath.providers.mock._config import MockConfig
from hotpath.providers.mock._http import install_cut_log_filter

__all__ = ["CONFIG_ENV", "MockUpstream", "app_from_env", "serve", "uvicorn_config"]

#: Environment variable carrying ``MockConfig.to_json()`` to worker processes.
CONFIG_ENV = "HOTPATH_MOCK_CONFIG"
MOCK_OPTIONS: dict[str, Any] = {
    "interface": "asgi3",
    "lifespan": "off",
    "server_header": False,
    "timeout_keep_alive": 75,  # outlive clients' idle pools: no close/reuse races
    "log_config": None,  # leave logging alone
}


def uvicorn_config(app: Any, host: str, port: int, **extra: Any) -> uvicorn.Config:
    """The uvicorn settings the mock always runs with (fast, quiet, no lifespan)."""
    return shared_config(app, host, port, **{**MOCK_OPTIONS, **extra})


def app_from_env() -> MockApp:
    """ASGI app factory for uvicorn worker processes: config from :data:`CONFIG_ENV`."""
    install_cut_log_filter()
    warm_up()
    return MockApp(MockConfig.from_json(os.environ.get(CONFIG_ENV, "{}")))


class MockUpstream:
    """The mock upstream LLM server.

    Run it on a background thread (``with MockUpstream(config) as mock:`` or
    :meth:`start_in_thread` / :meth:`stop`) or in the running event loop
    (``async with MockUpstream(config) as mock:``). ``port=0`` picks a free port;
    :attr:`port` and :attr:`url` are known once started. *clock* (default: the
    system clock) drives the rate-limit buckets; tests pass a ``ManualClock``.
    """

    def __init__(
        self,
        config: MockConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_recorded: int = 1000,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ConfigError(f"MockUpstream.port: expected an int in [0, 65535], got {port!r}")
        if not isinstance(host, str) or not host:
            raise ConfigError(f"MockUpstream.host: expected a host name or address, got {host!r}")
        if not isinstance(max_recorded, int) or max_recorded < 0:
            raise ConfigError(
                f"MockUpstream.max_recorded: expected an int >= 0, got {max_recorded!r}"
            )
        self._app = MockApp(config, max_recorded=max_recorded, clock=clock)
        self._host = host
        self._port = port
        self._server: PromptServer | None = None  # serving in the caller's loop
        self._thread: BackgroundServer | None = None  # serving on a thread
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        state = "running" if self._server is not None or self._thread is not None else "stopped"
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

    def start_in_thread(self, timeout: float = 10.0) -> Self:
        """Serve on a new daemon thread with its own uvloop; return once listening."""
        if self._server is not None or self._thread is not None:
            raise RuntimeError(f"{self!r} is already running")
        install_cut_log_filter()
        warm_up()
        thread = BackgroundServer(self._app, host=self._host, port=self._port, **MOCK_OPTIONS)
        self._thread = thread
        try:
            thread.start(timeout)
        except RuntimeError as exc:
            self._thread = None
            raise RuntimeError(f"mock upstream failed to start on {self.origin}") from exc
        self._port = thread.port
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the background-thread server (in-flight requests are cut off)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.stop(timeout)

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
        if self._server is not None or self._thread is not None:
            raise RuntimeError(f"{self!r} is already running")
        install_cut_log_filter()
        warm_up()
        started = asyncio.Event()
        sock = bind(self._host, self._port)
        self._port = sock.getsockname()[1]
        server = PromptServer(uvicorn_config(self._app, self._host, self._port), started.set)
        self._server = server

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
