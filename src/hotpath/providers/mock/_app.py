"""The raw ASGI application of the mock upstream: routing, auth, faults, timing."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from hotpath.providers.mock._anthropic import messages
from hotpath.providers.mock._config import MockConfig
from hotpath.providers.mock._embeddings import embeddings
from hotpath.providers.mock._faults import ERRORS, Plan, anthropic_fault, openai_fault, plan
from hotpath.providers.mock._http import (
    SSE_HEADERS,
    CutConnection,
    Peer,
    Receive,
    Reply,
    Scope,
    Send,
    anthropic_error,
    json_reply,
    openai_error,
    read_body,
    send_reply,
)
from hotpath.providers.mock._openai import chat_completions, list_models

__all__ = ["MockApp", "MockStats", "RecordedRequest"]

_CHAT, _EMBED, _MESSAGES, _MODELS = "chat", "embed", "messages", "models"
_ROUTES: dict[str, tuple[str, str]] = {
    "/v1/chat/completions": ("POST", _CHAT),
    "/v1/embeddings": ("POST", _EMBED),
    "/v1/messages": ("POST", _MESSAGES),
    "/v1/models": ("GET", _MODELS),
}
_INVALID = object()


@dataclass(frozen=True, slots=True)
class MockStats:
    """Counters since start or the last reset.

    ``chat_requests`` counts every request to ``/v1/chat/completions`` (streaming
    or not, valid or not); ``stream_requests`` those of them with ``stream: true``.
    ``cancelled`` counts clients that went away before their answer finished
    (noticed while the mock was waiting: ttft, tps spacing, or a hang).
    ``in_flight`` is a gauge, not reset.
    """

    chat_requests: int = 0
    stream_requests: int = 0
    embedding_requests: int = 0
    embedding_inputs: int = 0
    anthropic_requests: int = 0
    faults_injected: int = 0
    in_flight: int = 0
    cancelled: int = 0


_COUNTERS = tuple(f.name for f in dataclasses.fields(MockStats) if f.name != "in_flight")


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request as received: path, lowercased headers, and the JSON body
    (the raw bytes when the body is not JSON)."""

    path: str
    headers: dict[str, str]
    body: Any


def _input_count(value: object) -> int:
    if isinstance(value, list) and value and not all(isinstance(v, int) for v in value):
        return len(value)
    return 1 if value else 0


class MockApp:
    """The ASGI app. Counters are plain ints, safe to read from other threads."""

    def __init__(self, config: MockConfig | None = None, *, max_recorded: int = 1000) -> None:
        self._config = config or MockConfig()
        self._rng = random.Random(self._config.seed)
        self.requests: deque[RecordedRequest] = deque(maxlen=max_recorded)
        self._prefix = os.urandom(5).hex()
        self._ids = itertools.count(1)
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._in_flight = 0
        self._changed = threading.Condition()
        self._waiters = 0

    @property
    def config(self) -> MockConfig:
        return self._config

    def set_config(self, config: MockConfig) -> None:
        """Swap the behaviour for the next requests (and re-seed the RNG)."""
        if not isinstance(config, MockConfig):
            raise TypeError(f"set_config: expected a MockConfig, got {config!r}")
        self._config = config
        self._rng = random.Random(config.seed)

    def stats(self) -> MockStats:
        return MockStats(in_flight=self._in_flight, **self._counts)

    def reset(self) -> None:
        """Zero the counters (not ``in_flight``), forget recorded requests, re-seed."""
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self.requests.clear()
        self._rng = random.Random(self._config.seed)
        self._notify()

    def wait_for(self, predicate: Callable[[MockStats], bool], timeout: float = 5.0) -> MockStats:
        """Block until ``predicate(stats())`` holds and return those stats.

        For code running outside the server's event loop (calling it on that loop
        would block the server). Raises ``TimeoutError`` after *timeout* seconds.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            self._waiters += 1
            try:
                while True:
                    stats = self.stats()
                    if predicate(stats):
                        return stats
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError(f"mock stats did not match within {timeout} s: {stats}")
                    self._changed.wait(remaining)
            finally:
                self._waiters -= 1

    def _notify(self) -> None:
        if self._waiters:
            with self._changed:
                self._changed.notify_all()

    def new_id(self) -> str:
        return f"{self._prefix}{next(self._ids):010x}"

    def now(self) -> int:
        return int(time.time())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        path: str = scope["path"]
        route = _ROUTES.get(path)
        body = await read_body(receive)
        if route is None:
            await send_reply(send, self._control(scope["method"], path))
            return
        method, kind = route
        if scope["method"] != method:
            msg = f"Method not allowed: {scope['method']} {path}, expected {method}."
            await send_reply(send, openai_error(405, msg, code="method_not_allowed"))
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self._in_flight += 1
        peer = Peer(receive)
        try:
            await self._handle(kind, path, headers, body, peer, send)
        finally:
            self._in_flight -= 1
            peer.close()
            self._notify()

    def _control(self, method: str, path: str) -> Reply:
        if path == "/mock/stats" and method == "GET":
            return json_reply(dataclasses.asdict(self.stats()))
        if path == "/mock/reset" and method == "POST":
            self.reset()
            return json_reply(dataclasses.asdict(self.stats()))
        msg = f"Unknown request URL: {method} {path}."
        return openai_error(404, msg, code="unknown_url")

    def _count(self, name: str, by: int = 1) -> None:
        self._counts[name] += by
        self._notify()

    async def _handle(
        self, kind: str, path: str, headers: dict[str, str], body: bytes, peer: Peer, send: Send
    ) -> None:
        try:
            payload: Any = orjson.loads(body) if body else _INVALID
        except orjson.JSONDecodeError:
            payload = _INVALID
        self.requests.append(
            RecordedRequest(path, headers, body if payload is _INVALID else payload)
        )
        anthropic = kind == _MESSAGES
        is_dict = isinstance(payload, dict)
        if kind == _CHAT:
            self._count("chat_requests")
            if is_dict and payload.get("stream") is True:
                self._count("stream_requests")
        elif kind == _EMBED:
            self._count("embedding_requests")
            self._count("embedding_inputs", _input_count(payload.get("input") if is_dict else None))
        elif anthropic:
            self._count("anthropic_requests")
        error = anthropic_fault if anthropic else openai_fault
        config = self._config
        if config.api_key is not None and not _authorized(headers, config.api_key, anthropic):
            await send_reply(send, error("401"))
            return
        if kind == _MODELS:
            await send_reply(send, list_models(self))
            return
        if payload is _INVALID:
            await send_reply(send, error("json"))
            return
        try:
            todo = plan(headers, config, self._rng)
        except ValueError as exc:
            bad = anthropic_error(400, str(exc)) if anthropic else openai_error(400, str(exc))
            await send_reply(send, bad)
            return
        handler = _HANDLERS[kind]
        content_filter = todo.fault == "content_filter" and kind != _EMBED
        reply = handler(self, payload, content_filter)
        if reply.status != 200:
            await send_reply(send, reply)
            return
        fault = todo.fault
        if fault is not None and (fault != "content_filter" or content_filter):
            self._count("faults_injected")
        if fault in ERRORS:
            await send_reply(send, error(fault, todo.retry_after))
        elif fault == "hang":
            if not await peer.wait(None):
                self._count("cancelled")
        elif not await self._answer(reply, todo, peer, send):
            self._count("cancelled")

    async def _answer(self, reply: Reply, plan: Plan, peer: Peer, send: Send) -> bool:
        """Send *reply* on schedule; False if the client left first."""
        cut = plan.fault == "cut"
        frames = reply.frames
        tps = plan.tps
        if frames is None:
            delay = plan.ttft + (reply.tokens / tps if tps else 0.0)
            if not await peer.wait(delay):
                return False
            if not cut:
                await send_reply(send, reply)
                return True
            body = reply.body
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send(
                {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
            )
            raise CutConnection
        if not await peer.wait(plan.ttft):
            return False
        if cut:
            frames = frames[: max(1, len(frames) // 2)]
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        if tps is None:
            await send({"type": "http.response.body", "body": b"".join(frames), "more_body": cut})
        else:
            loop = asyncio.get_running_loop()
            start = loop.time()
            last = len(frames) - 1
            for i, frame in enumerate(frames):
                if i and not await peer.wait(start + i / tps - loop.time()):
                    return False
                await send(
                    {"type": "http.response.body", "body": frame, "more_body": cut or i < last}
                )
        if cut:
            raise CutConnection
        return True


def _authorized(headers: dict[str, str], key: str, anthropic: bool) -> bool:
    if anthropic:
        return headers.get("x-api-key") == key
    return headers.get("authorization") == f"Bearer {key}"


def _embed_handler(ctx: MockApp, payload: Any, content_filter: bool) -> Reply:
    return embeddings(ctx, payload)


_HANDLERS: dict[str, Callable[[MockApp, Any, bool], Reply]] = {
    _CHAT: chat_completions,
    _EMBED: _embed_handler,
    _MESSAGES: messages,
}


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
