"""Part 1 of ``bench.gateway_choices``: ASGI servers under wrk, plus their feature checks.

Every server runs ``bench.gateway_choices_app`` in its own process group; we only ever
signal the processes we started, by pid / process-group id.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.gateway_choices_app import (
    N_SSE_EVENTS,
    REQUEST_BODY,
    RESPONSE_BODY,
    STREAM_REQUEST_BODY,
    app,
)

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PY = sys.executable
ASGI_APP = "bench.gateway_choices_app:app"
RSGI_APP = "bench.gateway_choices_app:rsgi_app"
CHAT = "/v1/chat/completions"
ROUTES = {"json": REQUEST_BODY, "stream": STREAM_REQUEST_BODY}


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _uvicorn(http: str) -> Callable[[int, int], list[str]]:
    def argv(port: int, workers: int) -> list[str]:
        return [
            PY, "-m", "uvicorn", ASGI_APP, "--host", HOST, "--port", str(port),
            "--workers", str(workers), "--loop", "uvloop", "--http", http,
            "--no-access-log", "--log-level", "warning", "--lifespan", "on",
        ]  # fmt: skip

    return argv


def _granian(interface: str, target: str) -> Callable[[int, int], list[str]]:
    def argv(port: int, workers: int) -> list[str]:
        return [
            PY, "-m", "granian", "--interface", interface, "--host", HOST, "--port", str(port),
            "--workers", str(workers), "--loop", "uvloop", "--no-ws", "--log-level", "warning",
            target,
        ]  # fmt: skip

    return argv


@dataclass(frozen=True)
class ServerSpec:
    name: str
    argv: Callable[[int, int], list[str]]
    primary: bool  # primary: full matrix; reference: c=32 req/s only
    note: str
    routes: tuple[str, ...] = ("json", "stream")


SERVERS = [
    ServerSpec("uvicorn", _uvicorn("httptools"), True, "uvicorn, uvloop + httptools"),
    ServerSpec("granian", _granian("asgi", ASGI_APP), True, "granian, ASGI interface, uvloop"),
    ServerSpec(
        "uvicorn-h11", _uvicorn("h11"), False, "uvicorn, uvloop + h11 (reference)", ("json",)
    ),
    ServerSpec("granian-rsgi", _granian("rsgi", RSGI_APP), False, "granian, RSGI (reference)"),
]
BASE = "uvicorn"


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    port: int
    startup_s: float
    log: Path


def start(spec: ServerSpec, workers: int, tmp: Path) -> Running:
    port = free_port()
    log = tmp / f"{spec.name}-{workers}w-{port}.log"
    with log.open("wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            spec.argv(port, workers),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: we stop exactly what we started
        )
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(OSError):
            status, _, _ = http_request(port, "GET", "/_stats", b"", timeout=1.0)
            if status == 200:
                break
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(Running(proc, port, 0, log))
            raise RuntimeError(f"{spec.name} did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.005)
    return Running(proc, port, time.perf_counter() - t0, log)


def stop(run: Running, timeout: float = 10.0) -> int | None:
    """SIGTERM the server we started (its process group), SIGKILL it if it lingers."""
    if run.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.proc.pid, signal.SIGTERM)
        try:
            run.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.proc.pid, signal.SIGKILL)
            run.proc.wait()
    with contextlib.suppress(ProcessLookupError):  # workers left behind by a crashed parent
        os.killpg(run.proc.pid, signal.SIGKILL)
    return run.proc.returncode


@contextlib.contextmanager
def serving(spec: ServerSpec, workers: int, tmp: Path) -> Iterator[Running]:
    run = start(spec, workers, tmp)
    try:
        yield run
    finally:
        stop(run)


# --------------------------------------------------------------------------- raw HTTP/1.1


def _request_bytes(method: str, path: str, body: bytes) -> tuple[bytes, bytes]:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head, body


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one response (Content-Length or chunked) off a blocking socket."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before the response head")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(rest) < n:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed mid-body")
            rest += data
        return status, headers, rest[:n]
    while not rest.endswith(b"0\r\n\r\n"):
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed mid-body")
        rest += data
    return status, headers, _dechunk(rest)


def _dechunk(raw: bytes) -> bytes:
    out: list[bytes] = []
    i = 0
    while True:
        j = raw.index(b"\r\n", i)
        n = int(raw[i:j].split(b";")[0], 16)
        if n == 0:
            return b"".join(out)
        out.append(raw[j + 2 : j + 2 + n])
        i = j + 2 + n + 2


def http_request(
    port: int, method: str, path: str, body: bytes, timeout: float = 10.0
) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        head, body = _request_bytes(method, path, body)
        sock.sendall(head + body)
        return read_response(sock)


def verify(port: int) -> str | None:
    """The answers are what the gateway would send; a problem description, else None."""
    status, headers, body = http_request(port, "POST", CHAT, REQUEST_BODY)
    if status != 200 or body != RESPONSE_BODY or headers.get("x-hotpath-cache") != "hit":
        return f"JSON route: {status} {headers}"
    if headers.get("content-type") != "application/json":
        return f"JSON route content-type: {headers}"
    status, headers, body = http_request(port, "POST", CHAT, STREAM_REQUEST_BODY)
    events = [e for e in body.split(b"\n\n") if e.startswith(b"data: ")]
    if status != 200 or len(events) != N_SSE_EVENTS or events[-1] != b"data: [DONE]":
        return f"stream route: {status}, {len(events)} events"
    return None


# --------------------------------------------------------------------------- wrk


@dataclass(frozen=True)
class Wrk:
    rps: float
    p50_us: float
    p99_us: float
    max_us: float
    requests: int
    errors: int


LUA = """\
local f = assert(io.open("{body}", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("HOTPATH %.0f %.0f %.1f %.1f %.1f %.0f\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def lua_scripts(tmp: Path) -> dict[str, Path]:
    scripts = {}
    for route, body in ROUTES.items():
        (tmp / f"{route}.json").write_bytes(body)
        script = tmp / f"{route}.lua"
        script.write_text(LUA.format(body=tmp / f"{route}.json"))
        scripts[route] = script
    return scripts


def run_wrk(port: int, script: Path, conns: int, seconds: float) -> Wrk:
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(script)]
    argv.append(f"http://{HOST}:{port}{CHAT}")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True)
    for line in out.stdout.splitlines():
        if line.startswith("HOTPATH "):
            req, dur, p50, p99, mx, err = (float(x) for x in line.split()[1:])
            return Wrk(req / (dur / 1e6), p50, p99, mx, int(req), int(err))
    raise RuntimeError(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")


# --------------------------------------------------------------------------- feature checks


def check_nodelay(port: int, requests: int = 20) -> dict[str, tuple[float, float, int]]:
    """Keep-alive requests whose head and body go out in two writes.

    Returns (p50 ms, max ms, count >= 30 ms) per (client socket option, route).
    """
    out: dict[str, tuple[float, float, int]] = {}
    for nodelay in (False, True):
        for route, body in ROUTES.items():
            with socket.create_connection((HOST, port), timeout=10) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(nodelay))
                head, _ = _request_bytes("POST", CHAT, body)
                lat = []
                for i in range(requests + 3):
                    t0 = time.perf_counter()
                    sock.sendall(head)
                    sock.sendall(body)
                    status, _, _ = read_response(sock)
                    if status != 200:
                        raise RuntimeError(f"status {status}")
                    if i >= 3:
                        lat.append((time.perf_counter() - t0) * 1000)
            key = f"{'client NODELAY' if nodelay else 'client Nagle (default)'}, {route}"
            out[key] = (statistics.median(lat), max(lat), sum(x >= 30 for x in lat))
    return out


def _stats(port: int) -> dict[str, Any]:
    _, _, body = http_request(port, "GET", "/_stats", b"")
    stats: dict[str, Any] = orjson.loads(body)
    return stats


def check_disconnect(port: int) -> str:
    """A client reads one chunk of /slow then closes: does the app hear http.disconnect?"""
    http_request(port, "POST", "/_reset", b"")
    n, delay = 30, 0.03
    with socket.create_connection((HOST, port), timeout=5) as sock:
        head, body = _request_bytes("POST", f"/slow?n={n}&delay={delay}", b"{}")
        sock.sendall(head + body)
        buf = b""
        while b"data: " not in buf:
            buf += sock.recv(65536)
        t_close = time.time()
    time.sleep(n * delay + 0.4)
    events = _stats(port)["events"]
    if not events:
        return "no /slow request recorded"
    ev = events[-1]
    if ev.get("t_disconnect") is None:
        seen = "**never** (the app ran the stream to its end)"
    else:
        seen = f"after {(ev['t_disconnect'] - t_close) * 1000:.1f} ms"
    if "send_error" in ev:
        after = f"send raises `{ev['send_error'].split(':')[0]}` after {ev['sent']} chunks"
    else:
        after = f"send is a silent no-op ({ev.get('sent_after_disconnect', 0)} more chunks 'sent')"
    return f"disconnect seen {seen}; {after}"


def check_graceful(spec: ServerSpec, tmp: Path) -> str:
    """SIGTERM while a 1 s stream is in flight: does the stream finish, are new ones refused?"""
    run = start(spec, 1, tmp)
    try:
        with socket.create_connection((HOST, run.port), timeout=5) as sock:
            head, body = _request_bytes("POST", "/slow?n=20&delay=0.05", b"{}")
            sock.sendall(head + body)
            buf = b""
            while b"data: " not in buf:
                buf += sock.recv(65536)
            t_sig = time.perf_counter()
            os.kill(run.proc.pid, signal.SIGTERM)
            time.sleep(0.2)
            try:
                status, _, _ = http_request(run.port, "POST", CHAT, REQUEST_BODY, timeout=2)
                new = f"new request during shutdown answered {status}"
            except OSError as exc:
                new = f"new connection refused ({type(exc).__name__})"
            with contextlib.suppress(OSError):
                while data := sock.recv(65536):
                    buf += data
                    if buf.endswith(b"0\r\n\r\n"):
                        break
        finished = b"data: [DONE]" in buf and buf.endswith(b"0\r\n\r\n")
        code = run.proc.wait(15)
        took = time.perf_counter() - t_sig
        stream = "in-flight stream completed" if finished else "**in-flight stream cut**"
        return f"{stream}; {new}; exit {code} {took:.2f} s after SIGTERM"
    finally:
        stop(run)


def check_workers(port: int, conns: int = 32, bursts: int = 5) -> list[int]:
    """32 keep-alive connections opened at once (like wrk), 5 times: how many landed on
    the busier worker, per burst."""
    busier = []
    for _ in range(bursts):
        socks = [socket.create_connection((HOST, port), timeout=5) for _ in range(conns)]
        pids: Counter[str] = Counter()
        try:
            for sock in socks:
                head, body = _request_bytes("POST", CHAT, REQUEST_BODY)
                sock.sendall(head + body)
            for sock in socks:
                _, headers, _ = read_response(sock)
                pids[headers.get("x-hotpath-worker", "?")] += 1
        finally:
            for sock in socks:
                sock.close()
        busier.append(pids.most_common(1)[0][1])
        time.sleep(0.05)
    return busier


def _first_ok(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if http_request(port, "POST", CHAT, REQUEST_BODY, timeout=1)[0] == 200:
                return True
        time.sleep(0.005)
    return False


def check_uvicorn_thread() -> str:
    import uvicorn

    t0 = time.perf_counter()
    config = uvicorn.Config(
        app, host=HOST, port=0, loop="uvloop", http="httptools", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.002)
    if not server.started:
        return "**failed to start in a thread**"
    port = server.servers[0].sockets[0].getsockname()[1]
    ok = _first_ok(port, 5)
    started = time.perf_counter() - t0
    t1 = time.perf_counter()
    server.should_exit = True
    thread.join(10)
    stopped = time.perf_counter() - t1
    state = "serves" if ok else "**does not serve**"
    alive = " **thread still alive**" if thread.is_alive() else ""
    return (
        f"`uvicorn.Server(Config(app, port=0))` in a thread: {state} after {started * 1000:.0f} ms "
        f"(port 0 works: read it from `server.servers`); `should_exit = True` stops it in "
        f"{stopped * 1000:.0f} ms{alive}"
    )


def check_granian_thread() -> str:
    import asyncio

    import uvloop
    from granian.constants import Interfaces
    from granian.server.embed import Server

    port = free_port()
    server = Server(app, address=HOST, port=port, interface=Interfaces.ASGI, log_enabled=False)
    loop = uvloop.new_event_loop()
    errors: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.serve())
        except BaseException as exc:
            errors.append(exc)
        finally:
            loop.close()

    t0 = time.perf_counter()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ok = _first_ok(port, 5)
    started = time.perf_counter() - t0
    if not ok:
        return f"**embedded server did not serve** ({errors!r})"
    t1 = time.perf_counter()
    loop.call_soon_threadsafe(server.stop)
    thread.join(10)
    stopped = time.perf_counter() - t1
    alive = " **thread still alive**" if thread.is_alive() else ""
    err = f" (error: {errors[0]!r})" if errors else ""
    return (
        f"`granian.server.embed.Server` (logs 'Embedded server is experimental!') awaited in a "
        f"thread's loop: serves after {started * 1000:.0f} ms (port 0 binds, but the bound "
        "port is not exposed: pick a free port first); "
        f"`loop.call_soon_threadsafe(server.stop)` stops it in {stopped * 1000:.0f} ms{alive}{err}"
    )


# --------------------------------------------------------------------------- the run


@dataclass
class ServerResults:
    seconds: float
    repeats: int
    runs: dict[tuple[str, str, int, int], list[Wrk]] = field(default_factory=dict)
    startup: dict[str, list[float]] = field(default_factory=dict)
    nodelay: dict[str, dict[str, tuple[float, float, int]]] = field(default_factory=dict)
    disconnect: dict[str, str] = field(default_factory=dict)
    graceful: dict[str, str] = field(default_factory=dict)
    spread: dict[str, list[int]] = field(default_factory=dict)
    thread: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def median(self, server: str, route: str, conns: int, workers: int) -> Wrk | None:
        runs = self.runs.get((server, route, conns, workers))
        if not runs:
            return None
        return Wrk(
            statistics.median(r.rps for r in runs),
            statistics.median(r.p50_us for r in runs),
            statistics.median(r.p99_us for r in runs),
            max(r.max_us for r in runs),
            sum(r.requests for r in runs),
            sum(r.errors for r in runs),
        )


def bench_servers(tmp: Path, seconds: float, repeats: int) -> ServerResults:
    res = ServerResults(seconds, repeats)
    scripts = lua_scripts(tmp)

    def wrk(spec: ServerSpec, run: Running, route: str, conns: int, workers: int) -> None:
        r = run_wrk(run.port, scripts[route], conns, seconds)
        res.runs.setdefault((spec.name, route, conns, workers), []).append(r)
        print(
            f"  {spec.name:13} {workers}w {route:6} c={conns:<2} {r.rps:9,.0f} req/s  "
            f"p50 {r.p50_us:8.0f} µs  p99 {r.p99_us:8.0f} µs  errors {r.errors}",
            flush=True,
        )

    for rep in range(repeats):
        order = SERVERS[rep % len(SERVERS) :] + SERVERS[: rep % len(SERVERS)]
        for spec in order:
            with serving(spec, 1, tmp) as run:
                res.startup.setdefault(spec.name, []).append(run.startup_s)
                if rep == 0 and (problem := verify(run.port)):
                    res.problems.append(f"{spec.name}: {problem}")
                for route in spec.routes:
                    for conns in (1, 32) if spec.primary else (32,):
                        wrk(spec, run, route, conns, 1)
                if rep == 0:
                    res.nodelay[spec.name] = check_nodelay(run.port)
                    res.disconnect[spec.name] = check_disconnect(run.port)
            if spec.primary:
                with serving(spec, 2, tmp) as run:
                    time.sleep(0.5)  # let the second worker come up
                    for route in ROUTES:
                        wrk(spec, run, route, 32, 2)
                    if rep == 0:
                        res.spread[spec.name] = check_workers(run.port)
    for spec in SERVERS:
        res.graceful[spec.name] = check_graceful(spec, tmp)
    res.thread["uvicorn"] = check_uvicorn_thread()
    res.thread["granian"] = check_granian_thread()
    return res
