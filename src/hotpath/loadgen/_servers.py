"""The servers ``hotpath bench`` starts: a mock upstream and a gateway in front of it.

Each is its own process (``python -m hotpath mock-upstream`` / ``serve``), in its
own session so that stopping it stops its workers too, logging to a file in the
run's temporary directory, and ready once an HTTP probe answers 200. Separate
processes, not threads of the generator: on a thread they would share the
generator's interpreter lock and each would slow the other's timing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from http.client import HTTPConnection
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

__all__ = ["ServerProcess", "free_port", "spawn", "start_gateway", "start_mock", "stop_group"]

HOST = "127.0.0.1"
S = TypeVar("S", bound="ServerProcess")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop ``proc``, a session leader (``start_new_session``), and its group (its
    workers): SIGTERM, then SIGKILL after 10 s. The group is signalled even when
    the leader has exited already, in case its workers have not."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def _status(port: int, path: str, headers: Mapping[str, str] | None = None) -> int:
    """The status of ``GET path`` on 127.0.0.1:port; 0 when nothing answers."""
    conn = HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", path, headers=dict(headers or {}))
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


class ServerProcess:
    """A server process listening on ``port``; ``url`` is its ``.../v1`` base."""

    def __init__(self, name: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.name = name
        self.port = port
        self.proc = proc
        self.log = log

    @property
    def origin(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.origin}/v1"

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_ready(
        self, path: str, timeout: float, headers: Mapping[str, str] | None = None
    ) -> None:
        """Poll ``GET path`` (with ``headers``) until it answers 200; raise
        ``RuntimeError`` with the log's tail if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}"
                )
            if _status(self.port, path, headers) == 200:
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} not ready after {timeout:g} s:\n{self.tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after 10 s."""
        stop_group(self.proc)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, tp: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def spawn(
    kind: type[S],
    name: str,
    argv: Sequence[str],
    logs: Path,
    port: int,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> S:
    """Start ``argv`` in a session of its own (so that :func:`stop_group` stops its
    workers too), output to ``logs/NAME.log``, working in ``cwd`` (``logs``), with
    ``env`` over this process's environment less its ``HOTPATH_*`` settings (the
    outer ones are not those under test)."""
    log = logs / f"{name}.log"
    base = {k: v for k, v in os.environ.items() if not k.startswith("HOTPATH_")}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd or logs,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**base, **(env or {})},
            start_new_session=True,
        )
    return kind(name, port, proc, log)


def _spawn(name: str, args: Sequence[str], directory: Path, port: int) -> ServerProcess:
    argv = [sys.executable, "-m", "hotpath", *args]
    return spawn(ServerProcess, name, argv, directory, port)


def start_mock(directory: Path, args: Sequence[str] = (), *, timeout: float = 30) -> ServerProcess:
    """``hotpath mock-upstream ARGS`` on a free port of 127.0.0.1, once ready."""
    port = free_port()
    argv = ["mock-upstream", "--host", HOST, "--port", str(port), *args]
    return _ready(_spawn("mock", argv, directory, port), "/mock/stats", timeout)


def start_gateway(
    directory: Path, upstream: str, args: Sequence[str] = (), *, timeout: float = 60
) -> ServerProcess:
    """``hotpath serve --upstream UPSTREAM ARGS`` on a free port of 127.0.0.1, working
    in ``directory`` (where its default SQLite files go), once ``/healthz`` answers."""
    port = free_port()
    home = directory / "gateway"
    home.mkdir(exist_ok=True)
    argv = ["serve", "--host", HOST, "--port", str(port), "--upstream", upstream, *args]
    return _ready(_spawn("gateway", argv, home, port), "/healthz", timeout)


def _ready(server: ServerProcess, path: str, timeout: float) -> ServerProcess:
    """``server`` once ``path`` answers; stopped if it does not, or if the wait is
    interrupted (its own session does not get the terminal's Ctrl-C)."""
    try:
        server.wait_ready(path, timeout)
    except BaseException:
        server.stop()
        raise
    return server
