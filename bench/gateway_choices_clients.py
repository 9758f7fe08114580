"""Part 2 of ``bench.gateway_choices``: upstream HTTP clients, and what they do on bad days.

The upstream is ``bench.gateway_choices_app`` in a separate process (uvicorn + httptools,
or granian for HTTP/2 with prior knowledge); this process runs the clients on uvloop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import statistics
import sys
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import httpx
import httpx2
import orjson

from bench.gateway_choices_app import N_SSE_EVENTS, REQUEST_BODY, STREAM_REQUEST_BODY
from bench.gateway_choices_servers import HOST, ServerSpec, _granian, _uvicorn, serving

HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
SEQ_N = 2000
CONC_SECONDS = 1.0
CONC_TASKS = 32
STREAM_N = 200
IDLE_N = 300

UPSTREAM_UVICORN = ServerSpec("uvicorn", _uvicorn("httptools"), True, "")
UPSTREAM_GRANIAN = ServerSpec(
    "granian", _granian("asgi", "bench.gateway_choices_app:app"), True, ""
)


# --------------------------------------------------------------------------- the clients


class Client:
    name = ""
    streams = True

    async def post(self, url: str) -> int:
        """POST the ~1 KB JSON body, read the whole answer; returns its length."""
        raise NotImplementedError

    async def stream(self, url: str) -> tuple[int, int, int]:
        """POST a stream request, iterate SSE lines: (ns to first event, ns to all, events)."""
        raise NotImplementedError

    async def version(self, url: str) -> str:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError


class AiohttpClient(Client):
    name = "aiohttp"

    def __init__(self, limit: int = 100) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit, limit_per_host=limit),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30),
        )

    async def post(self, url: str) -> int:
        async with self.session.post(url, data=REQUEST_BODY, headers=HEADERS) as resp:
            return len(await resp.read())

    async def stream(self, url: str) -> tuple[int, int, int]:
        t0 = time.perf_counter_ns()
        first, events = 0, 0
        async with self.session.post(url, data=STREAM_REQUEST_BODY, headers=HEADERS) as resp:
            async for line in resp.content:
                if line.startswith(b"data:"):
                    if not events:
                        first = time.perf_counter_ns() - t0
                    events += 1
        return first, time.perf_counter_ns() - t0, events

    async def version(self, url: str) -> str:
        async with self.session.post(url, data=REQUEST_BODY, headers=HEADERS) as resp:
            await resp.read()
            return f"HTTP/{resp.version.major}.{resp.version.minor}" if resp.version else "?"

    async def aclose(self) -> None:
        await self.session.close()


class HttpxClient(Client):
    def __init__(
        self,
        name: str,
        limit: int = 100,
        *,
        http1: bool = True,
        http2: bool = False,
        module: ModuleType = httpx,
    ) -> None:
        self.name = name
        self.client: httpx.AsyncClient = module.AsyncClient(
            http1=http1,
            http2=http2,
            limits=module.Limits(max_connections=limit, max_keepalive_connections=limit),
            timeout=module.Timeout(30, connect=5),
        )

    async def post(self, url: str) -> int:
        resp = await self.client.post(url, content=REQUEST_BODY, headers=HEADERS)
        return len(resp.content)

    async def stream(self, url: str) -> tuple[int, int, int]:
        t0 = time.perf_counter_ns()
        first, events = 0, 0
        req = self.client.stream("POST", url, content=STREAM_REQUEST_BODY, headers=HEADERS)
        async with req as resp:
            async for line in resp.aiter_lines():
                if line.startswith("data:"):
                    if not events:
                        first = time.perf_counter_ns() - t0
                    events += 1
        return first, time.perf_counter_ns() - t0, events

    async def version(self, url: str) -> str:
        resp = await self.client.post(url, content=REQUEST_BODY, headers=HEADERS)
        return resp.http_version

    async def aclose(self) -> None:
        await self.client.aclose()


class RawClient(Client):
    """The floor: hand-written asyncio HTTP/1.1, keep-alive pool, Content-Length only."""

    name = "raw asyncio (floor)"
    streams = False

    def __init__(self) -> None:
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.requests: dict[str, tuple[str, int, bytes]] = {}

    async def post(self, url: str) -> int:
        if url not in self.requests:
            hostport, path = url.split("//", 1)[1].split("/", 1)
            name, number = hostport.split(":")
            text = (
                f"POST /{path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json"
                f"\r\nAuthorization: Bearer sk-bench\r\nContent-Length: {len(REQUEST_BODY)}"
                "\r\n\r\n"
            )
            self.requests[url] = (name, int(number), text.encode() + REQUEST_BODY)
        host, port, request = self.requests[url]
        conn = self.idle.pop() if self.idle else await asyncio.open_connection(host, port)
        reader, writer = conn
        writer.write(request)
        head = (await reader.readuntil(b"\r\n\r\n")).lower()
        i = head.index(b"content-length:") + 15
        body = await reader.readexactly(int(head[i : head.index(b"\r\n", i)]))
        self.idle.append(conn)
        return len(body)

    async def version(self, url: str) -> str:
        return "HTTP/1.1"

    async def aclose(self) -> None:
        for _, writer in self.idle:
            writer.close()
            await writer.wait_closed()
        self.idle.clear()


# --------------------------------------------------------------------------- measurements


@dataclass
class ClientRuns:
    seq_us: list[list[float]] = field(default_factory=list)  # per round: per-request µs
    seq_cpu_us: list[float] = field(default_factory=list)
    conc_rps: list[float] = field(default_factory=list)
    conc_cpu_us: list[float] = field(default_factory=list)
    idle_us: list[list[float]] = field(default_factory=list)  # seq, 32 idle pooled conns
    idle_cpu_us: list[float] = field(default_factory=list)
    ttfb_us: list[list[float]] = field(default_factory=list)
    all_us: list[list[float]] = field(default_factory=list)
    stream_cpu_us: list[float] = field(default_factory=list)
    version: str = ""


def p50_p99(rounds: list[list[float]]) -> tuple[float, float]:
    """Median over rounds of each round's median and p99."""
    p50s, p99s = [], []
    for xs in rounds:
        xs = sorted(xs)
        p50s.append(statistics.median(xs))
        p99s.append(xs[round(0.99 * (len(xs) - 1))])
    return statistics.median(p50s), statistics.median(p99s)


async def _seq(client: Client, url: str, runs: ClientRuns) -> None:
    for _ in range(200):
        await client.post(url)
    lat = []
    cpu0 = time.process_time()
    for _ in range(SEQ_N):
        t0 = time.perf_counter_ns()
        await client.post(url)
        lat.append((time.perf_counter_ns() - t0) / 1000)
    runs.seq_cpu_us.append((time.process_time() - cpu0) / SEQ_N * 1e6)
    runs.seq_us.append(lat)


async def _seq_idle(client: Client, url: str, runs: ClientRuns) -> None:
    """Sequential again, right after _conc: the pool now holds ~32 idle connections."""
    lat = []
    cpu0 = time.process_time()
    for _ in range(IDLE_N):
        t0 = time.perf_counter_ns()
        await client.post(url)
        lat.append((time.perf_counter_ns() - t0) / 1000)
    runs.idle_cpu_us.append((time.process_time() - cpu0) / IDLE_N * 1e6)
    runs.idle_us.append(lat)


async def _conc(client: Client, url: str, runs: ClientRuns) -> None:
    """CONC_TASKS tasks each posting back to back for CONC_SECONDS."""

    async def worker(n: int, until: float) -> int:
        done = 0
        while done < n and time.perf_counter() < until:
            await client.post(url)
            done += 1
        return done

    await asyncio.gather(*(worker(5, float("inf")) for _ in range(CONC_TASKS)))  # connect
    cpu0, t0 = time.process_time(), time.perf_counter()
    counts = await asyncio.gather(*(worker(1 << 30, t0 + CONC_SECONDS) for _ in range(CONC_TASKS)))
    wall, cpu, total = time.perf_counter() - t0, time.process_time() - cpu0, sum(counts)
    runs.conc_rps.append(total / wall)
    runs.conc_cpu_us.append(cpu / total * 1e6)


async def _streams(client: Client, url: str, runs: ClientRuns) -> None:
    for _ in range(20):
        await client.stream(url)
    ttfb, total = [], []
    cpu0 = time.process_time()
    for _ in range(STREAM_N):
        first, whole, events = await client.stream(url)
        if events != N_SSE_EVENTS:
            raise RuntimeError(f"{client.name}: {events} events")
        ttfb.append(first / 1000)
        total.append(whole / 1000)
    runs.stream_cpu_us.append((time.process_time() - cpu0) / STREAM_N * 1e6)
    runs.ttfb_us.append(ttfb)
    runs.all_us.append(total)


async def measure(
    factories: list[Callable[[], Client]], port: int, rounds: int
) -> dict[str, ClientRuns]:
    base = f"http://{HOST}:{port}"
    results: dict[str, ClientRuns] = {}
    for rnd in range(rounds):
        order = factories[rnd % len(factories) :] + factories[: rnd % len(factories)]
        for factory in order:
            client = factory()
            runs = results.setdefault(client.name, ClientRuns())
            try:
                runs.version = await client.version(base + "/upstream/json")
                await _seq(client, base + "/upstream/json", runs)
                await _conc(client, base + "/upstream/json", runs)
                await _seq_idle(client, base + "/upstream/json", runs)
                if client.streams:
                    await _streams(client, base + "/upstream/sse", runs)
            finally:
                await client.aclose()
            p50, p99 = p50_p99(runs.seq_us[-1:])
            print(
                f"  {client.name:28} seq p50 {p50:6.0f} µs p99 {p99:6.0f} µs  "
                f"cpu {runs.seq_cpu_us[-1]:5.0f} µs/req  c32 {runs.conc_rps[-1]:7,.0f} req/s",
                flush=True,
            )
    return results


# --------------------------------------------------------------------------- behaviour


def _exc(exc: BaseException) -> str:
    text = str(exc).split("\n")[0][:90]
    return f"`{type(exc).__module__}.{type(exc).__qualname__}`" + (f" ({text})" if text else "")


async def _admin(port: int, path: str) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection(HOST, port)
    method = "POST" if path == "/_reset" else "GET"
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
    head = (await reader.readuntil(b"\r\n\r\n")).lower()
    i = head.index(b"content-length:") + 15
    body = await reader.readexactly(int(head[i : head.index(b"\r\n", i)]))
    writer.close()
    await writer.wait_closed()
    stats: dict[str, Any] = orjson.loads(body)
    return stats


@dataclass
class Behaviour:
    rows: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class _Catcher:
    """Collects warnings, unraisable exceptions and loop-reported errors."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._cw = warnings.catch_warnings(record=True)
        self._hook = sys.unraisablehook

    def __enter__(self) -> _Catcher:
        self._log = self._cw.__enter__()
        warnings.simplefilter("always")
        sys.unraisablehook = self._unraisable
        asyncio.get_running_loop().set_exception_handler(self._loop_error)
        return self

    def _unraisable(self, u: Any) -> None:
        self.seen.append(f"unraisable {type(u.exc_value).__name__}: {u.exc_value}")

    def _loop_error(self, loop: asyncio.AbstractEventLoop, ctx: dict[str, Any]) -> None:
        self.seen.append(f"loop error: {ctx.get('message')}")

    def __exit__(self, *exc: object) -> None:
        gc.collect()
        self.seen += [f"{w.category.__name__}: {str(w.message)[:100]}" for w in self._log or []]
        self._cw.__exit__(None, None, None)
        sys.unraisablehook = self._hook
        asyncio.get_running_loop().set_exception_handler(None)


async def _cancel_mid_stream(
    port: int,
    open_stream: OpenStream,
    follow_up: Callable[[], Awaitable[str]],
    how: str,
) -> str:
    """Read 3 events of a slow stream, then cancel the task (or break); one pool slot."""
    url = f"http://{HOST}:{port}/slow?n=40&delay=0.02"
    got3 = asyncio.Event()
    ports: list[str] = []

    async def reader() -> None:
        async with open_stream(url) as (resp_port, lines):
            ports.append(resp_port)
            n = 0
            async for line in lines:
                if (line if isinstance(line, bytes) else line.encode()).startswith(b"data:"):
                    n += 1
                    if n == 3:
                        got3.set()
                        if how == "break":
                            break

    task = asyncio.create_task(reader())
    waiter = asyncio.ensure_future(got3.wait())
    await asyncio.wait({task, waiter}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if not got3.is_set():
        task.cancel()
        return f"**setup failed**: {task.exception() if task.done() else 'no events'}"
    if how == "cancel":
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    try:
        next_port = await asyncio.wait_for(follow_up(), 3)
    except TimeoutError:
        return "**next request stuck: pool slot not released**"
    conn = (
        "connection reused" if next_port == ports[0] else "connection closed, next uses a new one"
    )
    return f"pool slot released; {conn}"


OpenStream = Callable[[str], contextlib.AbstractAsyncContextManager[tuple[str, Any]]]


def _aiohttp_cases(
    sess: aiohttp.ClientSession, base: str
) -> tuple[OpenStream, Callable[[], Awaitable[str]]]:
    @contextlib.asynccontextmanager
    async def open_stream(url: str) -> AsyncIterator[tuple[str, Any]]:
        async with sess.post(url, data=b"{}") as r:
            yield r.headers.get("x-client-port", ""), r.content

    async def follow() -> str:
        async with sess.post(f"{base}/upstream/json", data=REQUEST_BODY) as r:
            await r.read()
            return r.headers.get("x-client-port", "")

    return open_stream, follow


def _httpx_cases(
    client: httpx.AsyncClient, base: str
) -> tuple[OpenStream, Callable[[], Awaitable[str]]]:
    @contextlib.asynccontextmanager
    async def open_stream(url: str) -> AsyncIterator[tuple[str, Any]]:
        async with client.stream("POST", url, content=b"{}") as r:
            yield str(r.headers.get("x-client-port", "")), r.aiter_lines()

    async def follow() -> str:
        r = await client.post(f"{base}/upstream/json", content=REQUEST_BODY)
        return str(r.headers.get("x-client-port", ""))

    return open_stream, follow


async def behaviour_aiohttp(port: int) -> Behaviour:
    b = Behaviour()
    base = f"http://{HOST}:{port}"
    with _Catcher() as catcher:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=1, sock_read=0.3)
        async with aiohttp.ClientSession(timeout=timeout) as s:
            t0 = time.perf_counter()
            try:
                async with s.post(f"{base}/slow?n=5&delay=0&stall=2", data=b"{}") as r:
                    async for _ in r.content:
                        pass
                b.rows["read timeout 0.3 s, server stalls"] = "**no error**"
            except Exception as exc:
                b.rows["read timeout 0.3 s, server stalls"] = (
                    f"{_exc(exc)} after {time.perf_counter() - t0:.2f} s"
                )
            try:
                async with s.post(f"{base}/slow?n=10&delay=0&cut=3", data=b"{}") as r:
                    async for _ in r.content:
                        pass
                b.rows["server drops the connection mid-stream"] = "**no error**"
            except Exception as exc:
                b.rows["server drops the connection mid-stream"] = _exc(exc)
            async with s.post(f"{base}/upstream/json", data=REQUEST_BODY) as r:
                transport = r.connection.transport if r.connection else None
                sock = transport.get_extra_info("socket") if transport else None
                nodelay = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) if sock else -1
                await r.read()
            b.rows["TCP_NODELAY on its sockets"] = "yes" if nodelay else "**no**"

        await _admin(port, "/_reset")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4)) as s:

            async def one() -> None:
                async with s.post(f"{base}/slow?n=1&delay=0.05", data=b"{}") as r:
                    await r.read()

            await asyncio.gather(*(one() for _ in range(32)))
        used = len((await _admin(port, "/_stats"))["client_ports"])
        b.rows["pool limit 4, 32 concurrent requests"] = f"{used} connections used"

        for how in ("cancel", "break"):
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
                open_stream, follow = _aiohttp_cases(s, base)
                b.rows[f"{how} mid-stream"] = await _cancel_mid_stream(
                    port, open_stream, follow, how
                )
        await asyncio.sleep(0.1)
    b.warnings = catcher.seen
    return b


async def behaviour_httpx(port: int) -> Behaviour:
    b = Behaviour()
    base = f"http://{HOST}:{port}"
    with _Catcher() as catcher:
        timeout = httpx.Timeout(30, connect=1, read=0.3)
        async with httpx.AsyncClient(timeout=timeout) as c:
            t0 = time.perf_counter()
            try:
                async with c.stream("POST", f"{base}/slow?n=5&delay=0&stall=2", content=b"{}") as r:
                    async for _ in r.aiter_lines():
                        pass
                b.rows["read timeout 0.3 s, server stalls"] = "**no error**"
            except Exception as exc:
                b.rows["read timeout 0.3 s, server stalls"] = (
                    f"{_exc(exc)} after {time.perf_counter() - t0:.2f} s"
                )
            try:
                async with c.stream("POST", f"{base}/slow?n=10&delay=0&cut=3", content=b"{}") as r:
                    async for _ in r.aiter_lines():
                        pass
                b.rows["server drops the connection mid-stream"] = "**no error**"
            except Exception as exc:
                b.rows["server drops the connection mid-stream"] = _exc(exc)
            async with c.stream("POST", f"{base}/upstream/json", content=REQUEST_BODY) as r:
                stream = r.extensions["network_stream"]
                sock = stream.get_extra_info("socket")
                nodelay = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) if sock else -1
                await r.aread()
            b.rows["TCP_NODELAY on its sockets"] = "yes" if nodelay else "**no**"

        await _admin(port, "/_reset")
        limits = httpx.Limits(max_connections=4)
        async with httpx.AsyncClient(limits=limits, timeout=timeout) as c:
            await asyncio.gather(
                *(c.post(f"{base}/slow?n=1&delay=0.05", content=b"{}") for _ in range(32))
            )
        used = len((await _admin(port, "/_stats"))["client_ports"])
        b.rows["pool limit 4, 32 concurrent requests"] = f"{used} connections used"

        for how in ("cancel", "break"):
            async with httpx.AsyncClient(limits=httpx.Limits(max_connections=1)) as c:
                open_stream, follow = _httpx_cases(c, base)
                b.rows[f"{how} mid-stream"] = await _cancel_mid_stream(
                    port, open_stream, follow, how
                )
        await asyncio.sleep(0.1)
    b.warnings = catcher.seen
    return b


# --------------------------------------------------------------------------- the run


@dataclass
class ClientResults:
    h1: dict[str, ClientRuns]
    h2: dict[str, ClientRuns]
    behaviour: dict[str, Behaviour]
    rounds: int


async def bench_clients(tmp: Path, rounds: int) -> ClientResults:
    h1_clients: list[Callable[[], Client]] = [
        AiohttpClient,
        lambda: HttpxClient("httpx"),
        lambda: HttpxClient("httpx http2=True (h1 fallback)", http2=True),
        lambda: HttpxClient("httpx2 (the openai SDK's)", module=httpx2),
        RawClient,
    ]
    h2_clients: list[Callable[[], Client]] = [
        AiohttpClient,
        lambda: HttpxClient("httpx"),
        lambda: HttpxClient("httpx h2 prior knowledge", http1=False, http2=True),
    ]
    with serving(UPSTREAM_UVICORN, 1, tmp) as up:
        print("upstream: uvicorn + httptools", flush=True)
        h1 = await measure(h1_clients, up.port, rounds)
        behaviour = {
            "aiohttp": await behaviour_aiohttp(up.port),
            "httpx": await behaviour_httpx(up.port),
        }
    with serving(UPSTREAM_GRANIAN, 1, tmp) as up:
        print("upstream: granian (HTTP/1.1 and h2c)", flush=True)
        h2 = await measure(h2_clients, up.port, rounds)
    return ClientResults(h1, h2, behaviour, rounds)
