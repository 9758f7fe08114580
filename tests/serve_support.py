"""Running ``hotpath serve`` as a real process in tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

__all__ = ["free_port", "hotpath_serve", "wait_until_healthy"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def hotpath_serve(args: list[str], cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m hotpath serve ARGS`` with stderr in ``log``; killed on the way out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTPATH_")}
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hotpath", "serve", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def wait_until_healthy(
    client: httpx.Client, proc: subprocess.Popen[bytes], log: Path, deadline: float
) -> None:
    """Poll ``GET /healthz`` until it answers 200, the process dies or time runs out."""
    while True:
        if proc.poll() is not None:
            pytest.fail(f"hotpath serve exited with {proc.returncode}: {log.read_text()}")
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"hotpath serve did not answer /healthz in time: {log.read_text()}")
        time.sleep(0.05)
