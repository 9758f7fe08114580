"""The apps served in ``bench.gateway_choices``: raw ASGI (and RSGI), no framework.

``POST /v1/chat/completions`` mimics the gateway's cache-hit path: read the body,
``orjson.loads`` it, build a canonical key (``orjson.dumps(..., OPT_SORT_KEYS)`` of
the fields that matter), ``blake2b(digest_size=16)``, dict lookup, answer with the
cached ~1 KB JSON, or with 40 SSE chunks (separate body messages) plus ``[DONE]``
when the request says ``"stream": true``.

Routes used by the feature checks and the upstream-client benchmark:

- ``POST /upstream/json``: reads the body, answers the same ~1 KB JSON (no hashing);
- ``POST /upstream/sse``: 40 SSE chunks and ``[DONE]``, no delays;
- ``POST /slow?n=&delay=&stall=&cut=``: ``n`` chunks ``delay`` s apart; stalls 5 s
  before chunk ``stall``, raises before chunk ``cut`` (the server then drops the
  connection mid-body). It watches ``receive()`` for ``http.disconnect`` and records,
  per request, when the disconnect was seen and what ``send`` did after it;
- ``GET /_stats`` (that record, the client ports seen, the pid), ``POST /_reset``.

Every answer carries ``x-hotpath-worker`` (the pid); upstream routes add
``x-client-port`` (the peer port the server saw) so a client can tell a reused
connection from a new one.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson

if TYPE_CHECKING:
    from granian._granian import RSGIHTTPProtocol as HTTPProtocol
    from granian.rsgi import Scope as RSGIScope

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PID = str(os.getpid()).encode()


def _after_fork() -> None:
    global PID, _RSGI_PID
    PID = str(os.getpid()).encode()
    _RSGI_PID = PID.decode()
    JSON_HEADERS[1] = SSE_HEADERS[2] = (b"x-hotpath-worker", PID)


os.register_at_fork(after_in_child=_after_fork)
KEY_FIELDS = ("model", "messages", "temperature", "max_tokens", "top_p", "stream", "tools")

# A ~1 KB chat-completions request (the non-streaming variant; the streaming one adds
# "stream": true).
REQUEST: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [
        {
            "role": "system",
            "content": "You are a terse assistant for a travel agency. Answer in two "
            "sentences at most, cite no sources, and never invent prices. " * 3,
        },
        {
            "role": "user",
            "content": "Which is the capital of France, and is it worth a "
            "weekend trip in November? I like museums, food markets and long walks. " * 3,
        },
        {"role": "assistant", "content": "Paris. Yes: museums are quiet in November."},
        {"role": "user", "content": "And what should I pack for the weather?"},
    ],
    "temperature": 0.2,
    "max_tokens": 256,
    "top_p": 1.0,
    "user": "bench-user-0001",
    "metadata": {"trace_id": "7d9f0c1e2b3a4f5e", "tenant": "acme"},
}
REQUEST_BODY = orjson.dumps(REQUEST)
STREAM_REQUEST_BODY = orjson.dumps({**REQUEST, "stream": True})

RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-9f8e7d6c5b4a3f2e1d0c",
    "object": "chat.completion",
    "created": 1_718_000_000,
    "model": "gpt-4o-mini-2024-07-18",
    "system_fingerprint": "fp_0123456789",
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "logprobs": None,
            "message": {
                "role": "assistant",
                "content": "Pack layers: a warm coat, a scarf, an umbrella and comfortable "
                "waterproof shoes; November in Paris is grey, 5 to 12 degrees and often "
                "wet. " * 6,
            },
        }
    ],
    "usage": {"prompt_tokens": 231, "completion_tokens": 148, "total_tokens": 379},
}
RESPONSE_BODY = orjson.dumps(RESPONSE)


def _sse_chunk(i: int) -> bytes:
    chunk = {
        "id": "chatcmpl-9f8e7d6c5b4a",
        "object": "chat.completion.chunk",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"content": f"tok{i:03d} "}, "finish_reason": None}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


SSE_CHUNKS = [_sse_chunk(i) for i in range(40)]
SSE_DONE = b"data: [DONE]\n\n"
N_SSE_EVENTS = len(SSE_CHUNKS) + 1


def cache_key(request: dict[str, Any]) -> bytes:
    canonical = orjson.dumps(
        {f: request[f] for f in KEY_FIELDS if f in request}, option=orjson.OPT_SORT_KEYS
    )
    return hashlib.blake2b(canonical, digest_size=16).digest()


# The "cache": the two bench requests are hits.
CACHE: dict[bytes, bytes | list[bytes]] = {
    cache_key(REQUEST): RESPONSE_BODY,
    cache_key(orjson.loads(STREAM_REQUEST_BODY)): SSE_CHUNKS,
}
MISS_BODY = b'{"error":{"message":"cache miss","type":"bench"}}'

JSON_HEADERS = [(b"content-type", b"application/json"), (b"x-hotpath-worker", PID)]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-hotpath-worker", PID),
]

# What /slow saw; read back with GET /_stats (per worker process).
EVENTS: list[dict[str, Any]] = []
CLIENT_PORTS: set[int] = set()


async def _read_body(receive: Receive) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    parts = [body]
    while message.get("more_body", False):
        message = await receive()
        parts.append(message.get("body", b""))
    return b"".join(parts)


async def _json(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]]) -> None:
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _stream(send: Send, chunks: list[bytes], extra: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + extra})
    for chunk in chunks:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": SSE_DONE})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _params(query: bytes | str) -> dict[str, float]:
    text = query.decode() if isinstance(query, bytes) else query
    return {k: float(v[0]) for k, v in parse_qs(text).items()}


async def _slow(
    params: dict[str, float],
    send_chunk: Callable[[bytes], Awaitable[None]],
    wait_disconnect: Callable[[], Awaitable[object]],
) -> None:
    """The body of /slow, shared by the ASGI and RSGI apps."""
    n, delay = int(params.get("n", 20)), params.get("delay", 0.05)
    stall, cut = int(params.get("stall", -1)), int(params.get("cut", -1))
    event: dict[str, Any] = {"t_start": time.time(), "t_disconnect": None, "sent": 0}
    EVENTS.append(event)

    async def watch() -> None:
        await wait_disconnect()
        event["t_disconnect"] = time.time()

    watcher = asyncio.create_task(watch())
    try:
        for i in range(n):
            if i == stall:
                await asyncio.sleep(5)
            if i == cut:
                raise RuntimeError("bench: upstream dies mid-stream")
            if delay:
                await asyncio.sleep(delay)
            try:
                await send_chunk(SSE_CHUNKS[i % len(SSE_CHUNKS)])
            except Exception as exc:
                event["send_error"] = f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"
                event["t_send_error"] = time.time()
                return
            event["sent"] = i + 1
            if event["t_disconnect"] is not None and "sent_after_disconnect" not in event:
                event["sent_after_disconnect"] = 0
            if "sent_after_disconnect" in event:
                event["sent_after_disconnect"] += 1
        await send_chunk(SSE_DONE)
    finally:
        event["t_end"] = time.time()
        await asyncio.sleep(0.05)  # give the watcher a chance to see a late disconnect
        watcher.cancel()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI app (served by uvicorn and by granian's ASGI interface)."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    path = scope["path"]
    if path == "/v1/chat/completions":
        request = orjson.loads(await _read_body(receive))
        hit = CACHE.get(cache_key(request))
        if hit is None:
            await _json(send, 404, MISS_BODY, [(b"x-hotpath-cache", b"miss")])
        elif isinstance(hit, bytes):
            await _json(send, 200, hit, [(b"x-hotpath-cache", b"hit")])
        else:
            await _stream(send, hit, [(b"x-hotpath-cache", b"hit")])
        return
    port = scope["client"][1] if scope.get("client") else 0
    port_header = [(b"x-client-port", str(port).encode())]
    if path == "/upstream/json":
        CLIENT_PORTS.add(port)
        await _read_body(receive)
        await _json(send, 200, RESPONSE_BODY, port_header)
    elif path == "/upstream/sse":
        CLIENT_PORTS.add(port)
        await _read_body(receive)
        await _stream(send, SSE_CHUNKS, port_header)
    elif path == "/slow":
        CLIENT_PORTS.add(port)
        await _read_body(receive)
        await send(
            {"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + port_header}
        )

        async def send_chunk(chunk: bytes) -> None:
            more = chunk is not SSE_DONE
            await send({"type": "http.response.body", "body": chunk, "more_body": more})

        async def wait_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        await _slow(_params(scope.get("query_string", b"")), send_chunk, wait_disconnect)
    elif path == "/_stats":
        stats = {"pid": os.getpid(), "events": EVENTS, "client_ports": sorted(CLIENT_PORTS)}
        await _json(send, 200, orjson.dumps(stats), [])
    elif path == "/_reset":
        EVENTS.clear()
        CLIENT_PORTS.clear()
        await _json(send, 200, b"{}", [])
    else:
        await _json(send, 404, b'{"error":"not found"}', [])


_RSGI_PID = str(os.getpid())
_RSGI_JSON = [("content-type", "application/json")]
_RSGI_SSE = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]


async def rsgi_app(scope: RSGIScope, protocol: HTTPProtocol) -> None:
    """The same cache-hit route (and /slow, /_stats) for granian's RSGI interface."""
    pid = [("x-hotpath-worker", _RSGI_PID)]
    if scope.path == "/v1/chat/completions":
        request = orjson.loads(await protocol())
        hit = CACHE.get(cache_key(request))
        if hit is None:
            protocol.response_bytes(
                404, [*_RSGI_JSON, *pid, ("x-hotpath-cache", "miss")], MISS_BODY
            )
        elif isinstance(hit, bytes):
            protocol.response_bytes(200, [*_RSGI_JSON, *pid, ("x-hotpath-cache", "hit")], hit)
        else:
            transport = protocol.response_stream(
                200, [*_RSGI_SSE, *pid, ("x-hotpath-cache", "hit")]
            )
            for chunk in hit:
                await transport.send_bytes(chunk)
            await transport.send_bytes(SSE_DONE)
    elif scope.path == "/slow":
        await protocol()
        transport = protocol.response_stream(200, [*_RSGI_SSE, *pid])
        await _slow(_params(scope.query_string), transport.send_bytes, protocol.client_disconnect)
    elif scope.path == "/_stats":
        stats = {"pid": os.getpid(), "events": EVENTS, "client_ports": sorted(CLIENT_PORTS)}
        protocol.response_bytes(200, _RSGI_JSON, orjson.dumps(stats))
    elif scope.path == "/_reset":
        EVENTS.clear()
        protocol.response_bytes(200, _RSGI_JSON, b"{}")
    else:
        protocol.response_bytes(404, _RSGI_JSON, b'{"error":"not found"}')
