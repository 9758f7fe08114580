"""Processes for ``bench.gateway``: mock upstreams, hotpath gateways, LiteLLM's proxy.

Each server runs in its own process (and session, so that stopping it stops its
workers too), logs to a file under the run's temporary directory, and is ready
once an HTTP probe answers 200. LiteLLM lives in a throwaway venv that
:func:`ensure_litellm` creates with ``pip install 'litellm[proxy]'``; it is never a
project dependency.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from hotpath.loadgen._servers import ServerProcess, free_port, spawn

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
LITELLM_VENV = ROOT / "bench" / ".litellm-venv"
#: LiteLLM refuses to start without a master key; clients send it as a Bearer token.
MASTER_KEY = "sk-hotpath-bench-" + "0123456789abcdef" * 2
#: The public model names: "fast" goes to the mock answering at once, "slow" to the
#: mock answering after 20 ms. Both gateways map them to upstream model gpt-4o-mini.
FAST, SLOW = "fast", "slow"

__all__ = [
    "FAST",
    "HOST",
    "LITELLM_VENV",
    "MASTER_KEY",
    "SLOW",
    "Server",
    "ensure_litellm",
    "free_port",
    "start_hotpath",
    "start_litellm",
    "start_mock",
]


class Server(ServerProcess):
    """A server process of the benchmark; :meth:`stop` ends it (and its workers)."""

    def __init__(self, name: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
        super().__init__(name, port, proc, log)
        #: hotpath on its default tiers: the SQLite file its cache writes.
        self.sqlite: Path | None = None

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and its workers (its process group) so far."""
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # the process just ended
            if int(fields[2]) == self.proc.pid:  # pgrp
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")


def _spawn(
    name: str,
    argv: list[str],
    tmp: Path,
    port: int,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Server:
    return spawn(Server, name, argv, tmp, port, cwd=cwd, env=env)


def start_mock(tmp: Path, ttft_ms: float) -> Server:
    """``hotpath mock-upstream`` with every token at once after *ttft_ms* (1 worker)."""
    port = free_port()
    argv = [sys.executable, "-m", "hotpath", "mock-upstream", "--port", str(port)]
    argv += ["--ttft", f"{ttft_ms:g}ms"]
    server = _spawn(f"mock-{ttft_ms:g}ms", argv, tmp, port)
    server.wait_ready("/mock/stats", 30)
    return server


def start_hotpath(
    tmp: Path, workers: int, fast: Server, slow: Server, *, default_tiers: bool = False
) -> Server:
    """``hotpath serve`` with "fast" and "slow" routed to the mocks and a memory-only
    cache, or (*default_tiers*) no ``[cache]`` section: serve's default tiers, memory
    then SQLite, the file ``.hotpath/cache.db`` under the server's own directory in
    *tmp* (its working directory)."""
    port = free_port()
    name = f"hotpath-{workers}w" + ("-default" if default_tiers else "")
    home = tmp / name
    home.mkdir()
    config = home / "hotpath.toml"
    config.write_text(
        f'[server]\nhost = "{HOST}"\nport = {port}\nworkers = {workers}\n\n'
        f'[upstreams.{FAST}]\nbase_url = "{fast.origin}/v1"\n\n'
        f'[upstreams.{SLOW}]\nbase_url = "{slow.origin}/v1"\n\n'
        f'[models]\n{FAST} = {{ upstream = "{FAST}", model = "gpt-4o-mini" }}\n'
        f'{SLOW} = {{ upstream = "{SLOW}", model = "gpt-4o-mini" }}\n'
        + ("" if default_tiers else '\n[cache]\ntiers = ["memory://"]\n')
    )
    argv = [sys.executable, "-m", "hotpath", "serve", "--config", str(config)]
    server = _spawn(name, argv, tmp, port, cwd=home)
    server.wait_ready("/healthz", 60)
    if default_tiers:
        server.sqlite = home / ".hotpath" / "cache.db"
    return server


def ensure_litellm(log: Path) -> tuple[Path | None, str]:
    """The venv's ``litellm`` executable (creating the venv when missing) and a note;
    ``(None, reason)`` when it cannot be installed."""
    exe = LITELLM_VENV / "bin" / "litellm"
    python = LITELLM_VENV / "bin" / "python"
    if exe.exists() and _litellm_version(python):
        return exe, f"reused the venv {LITELLM_VENV.relative_to(ROOT)}"
    t0 = time.monotonic()
    with log.open("wb") as out:
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(LITELLM_VENV)],
            [str(python), "-m", "pip", "install", "-q", "litellm[proxy]"],
        ]
        for argv in steps:
            try:
                code = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=600)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return None, f"`{' '.join(argv[-3:])}` failed: {exc}"
            if code.returncode != 0:
                tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                return None, f"`{' '.join(argv[-3:])}` exited {code.returncode}: {' / '.join(tail)}"
    if not exe.exists() or not _litellm_version(python):
        return None, "pip finished but the venv has no working `litellm` command"
    return exe, f"installed into {LITELLM_VENV.relative_to(ROOT)} in {time.monotonic() - t0:.0f} s"


def _litellm_version(python: Path) -> str:
    try:
        out = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def litellm_versions() -> str:
    """Versions of LiteLLM and the server stack it runs on, from its venv."""
    code = (
        "import importlib.metadata as m\n"
        "out = []\n"
        "for p in ('litellm', 'uvicorn', 'uvloop', 'httptools', 'fastapi', 'aiohttp', 'httpx'):\n"
        "    try: out.append(f'{p} {m.version(p)}')\n"
        "    except m.PackageNotFoundError: out.append(f'{p} absent')\n"
        "print(', '.join(out))\n"
    )
    python = LITELLM_VENV / "bin" / "python"
    try:
        out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.stdout.strip() or "?"


def start_litellm(
    exe: Path, tmp: Path, workers: int, fast: Server, slow: Server, *, cache: bool
) -> Server:
    """LiteLLM's proxy, offline, routing "fast" and "slow" to the mocks."""
    port = free_port()
    name = f"litellm-{workers}w" + ("-cache" if cache else "")
    entries = "".join(
        f"  - model_name: {public}\n    litellm_params:\n      model: openai/gpt-4o-mini\n"
        f"      api_base: {mock.origin}/v1\n      api_key: x\n"
        for public, mock in ((FAST, fast), (SLOW, slow))
    )
    settings = "litellm_settings:\n  set_verbose: false\n"
    if cache:
        settings += "  cache: true\n  cache_params:\n    type: local\n"
    config = tmp / f"{name}.yaml"
    config.write_text(f"model_list:\n{entries}{settings}")
    argv = [str(exe), "--config", str(config), "--host", HOST, "--port", str(port)]
    argv += ["--num_workers", str(workers)]
    env = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "LITELLM_LOG": "ERROR",  # also turns uvicorn's access log off
        "LITELLM_TELEMETRY": "False",
    }
    server = _spawn(name, argv, tmp, port, env)
    server.wait_ready("/health/liveliness", 120)
    return server
