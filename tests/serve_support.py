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

__all__ = ["alive", "children", "free_port", "hotpath_serve", "wait_until_healthy"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def children(pid: int) -> list[int]:
    """The live (not zombie) processes whose parent is ``pid``, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it exited meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@contextlib.contextmanager
def hotpath_serve(args: list[str], cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m hotpath serve ARGS`` with stderr in ``log``; stopped on the way out
    (SIGTERM, so that a master stops its workers; SIGKILL after 10 s)."""
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
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
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
