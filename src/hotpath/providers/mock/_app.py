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

from hotpath._asgi_types import Message
from hotpath._clock import Clock, SystemClock
from hotpath._errors import ConfigError
from hotpath.providers.mock._anthropic import messages
from hotpath.providers.mock._config import MockConfig
from hotpath.providers.mock._embeddings import embeddings
from hotpath.providers.mock._faults import ERRORS, Plan, anthropic_fault, openai_fault, plan
from hotpath.providers.mock._http import (
    SSE_HEADERS,
    CutConnection,
    Header,
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
from hotpath.providers.mock._limits import (
    RateLimits,
    anthropic_context_error,
    anthropic_rejection,
    openai_context_error,
    openai_rejection,
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
    ``rate_limited`` counts 429s of the configured rate limits (not injected
    faults), ``context_length_exceeded`` the 400s of the context windows and
    ``stretched`` the requests whose latency was stretched because more than
    ``capacity`` requests were in flight.
    ``in_flight`` is a gauge, not reset; ``peak_in_flight`` its highest value
    since start or the last reset.
    """

    chat_requests: int = 0
    stream_requests: int = 0
    embedding_requests: int = 0
    embedding_inputs: int = 0
    anthropic_requests: int = 0
    faults_injected: int = 0
    in_flight: int = 0
    cancelled: int = 0
    rate_limited: int = 0
    context_length_exceeded: int = 0
    stretched: int = 0
    peak_in_flight: int = 0


_GAUGES = ("in_flight", "peak_in_flight")
_COUNTERS = tuple(f.name for f in dataclasses.fields(MockStats) if f.name not in _GAUGES)


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
    """The ASGI app. Counters are plain ints, safe to read from other threads.

    *clock* (default: the system clock) drives the rate-limit buckets and the
    ``created`` timestamps; tests pass a ``ManualClock``.
    """

    def __init__(
        self,
        config: MockConfig | None = None,
        *,
        max_recorded: int = 1000,
        clock: Clock | None = None,
    ) -> None:
        self._config = config or MockConfig()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._limits = RateLimits(
            self._config.rate_limit_rpm, self._config.rate_limit_tpm, self._clock
        )
        self._rng = random.Random(self._config.seed)
        self.requests: deque[RecordedRequest] = deque(maxlen=max_recorded)
        self._prefix = os.urandom(5).hex()
        self._ids = itertools.count(1)
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._in_flight = 0
        self._peak = 0
        self._changed = threading.Condition()
        self._waiters = 0

    @property
    def config(self) -> MockConfig:
        return self._config

    @property
    def clock(self) -> Clock:
        return self._clock

    def set_config(self, config: MockConfig) -> None:
        """Swap the behaviour for the next requests (and re-seed the RNG).

        Rate-limit buckets whose limit did not change keep their level; a
        changed limit starts with a full bucket.
        """
        if not isinstance(config, MockConfig):
            raise TypeError(f"set_config: expected a MockConfig, got {config!r}")
        self._limits.reconfigure(config.rate_limit_rpm, config.rate_limit_tpm)
        self._config = config
        self._rng = random.Random(config.seed)

    def stats(self) -> MockStats:
        return MockStats(in_flight=self._in_flight, peak_in_flight=self._peak, **self._counts)

    def reset(self) -> None:
        """Zero the counters (not ``in_flight``), forget recorded requests, re-seed,
        refill the rate-limit buckets."""
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._peak = self._in_flight
        self._limits.refill()
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
        return int(self._clock.now())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        path: str = scope["path"]
        route = _ROUTES.get(path)
        body = await read_body(receive)
        if route is None:
            await send_reply(send, self._control(scope["method"], path, body))
            return
        method, kind = route
        if scope["method"] != method:
            msg = f"Method not allowed: {scope['method']} {path}, expected {method}."
            await send_reply(send, openai_error(405, msg, code="method_not_allowed"))
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self._in_flight += 1
        if self._in_flight > self._peak:
            self._peak = self._in_flight
        peer = Peer(receive)
        try:
            await self._handle(kind, path, headers, body, peer, send)
        finally:
            self._in_flight -= 1
            peer.close()
            self._notify()

    def _control(self, method: str, path: str, body: bytes) -> Reply:
        if path == "/mock/stats" and method == "GET":
            return json_reply(dataclasses.asdict(self.stats()))
        if path == "/mock/reset" and method == "POST":
            self.reset()
            return json_reply(dataclasses.asdict(self.stats()))
        if path == "/mock/config" and method == "GET":
            return Reply(body=self._config.to_json())
        if path == "/mock/config" and method == "POST":
            try:
                config = self._config.updated_from_json(body)
            except ConfigError as exc:
                return openai_error(400, str(exc), code="invalid_config")
            self.set_config(config)
            return Reply(body=config.to_json())
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
        limits = self._limits if config.rate_limited and kind != _MODELS else None
        extra: list[Header] | None = None
        if limits is not None or config.capacity is not None:
            # Every response of the route carries the limits' state as it is when
            # the response starts, and the *extra* headers added on the way.
            extra = []
            send = _adding_headers(send, extra, limits, anthropic)
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
            todo = plan(headers, config, self._rng, payload.get("model") if is_dict else None)
        except ValueError as exc:
            bad = anthropic_error(400, str(exc)) if anthropic else openai_error(400, str(exc))
            await send_reply(send, bad)
            return
        handler = _HANDLERS[kind]
        content_filter = todo.fault == "content_filter" and kind != _EMBED
        omit_usage = headers.get("x-mock-usage") == "omit" and kind != _MESSAGES and is_dict
        if omit_usage:
            # Like a compatible server that reports no usage (and ignores
            # stream_options.include_usage).
            payload = {k: v for k, v in payload.items() if k != "stream_options"}
        reply = handler(self, payload, content_filter)
        if omit_usage and reply.status == 200 and reply.frames is None:
            document = orjson.loads(reply.body)
            document.pop("usage", None)
            reply = dataclasses.replace(reply, body=orjson.dumps(document))
        if reply.status != 200:
            await send_reply(send, reply)
            return
        if todo.window is not None or limits is not None:
            refusal = self._check_limits(kind, payload, reply, todo.window, limits)
            if refusal is not None:
                await send_reply(send, refusal)
                return
        fault = todo.fault
        if fault is not None and (fault != "content_filter" or content_filter):
            self._count("faults_injected")
        if fault in ERRORS:
            await send_reply(send, error(fault, todo.retry_after))
        elif fault == "hang":
            if not await peer.wait(None):
                self._count("cancelled")
        else:
            stretch = 1.0
            if config.capacity is not None and extra is not None:
                # Processor sharing: beyond capacity, everyone gets a slice.
                stretch = max(1.0, self._in_flight / config.capacity)
                if stretch > 1.0:
                    self._count("stretched")
                extra.append((b"x-mock-stretch", f"{stretch:g}".encode()))
            if not await self._answer(reply, todo, stretch, peer, send):
                self._count("cancelled")

    def _check_limits(
        self, kind: str, payload: Any, reply: Reply, window: int | None, limits: RateLimits | None
    ) -> Reply | None:
        """The 400 of a context window or the 429 of a rate limit the valid
        request *payload* runs into, if any (admitting it otherwise)."""
        anthropic = kind == _MESSAGES
        if kind == _EMBED:
            requested: int | None = None
            reserve = 0
        else:
            requested = _requested(payload, anthropic)
            n = payload.get("n") if not anthropic else None
            n = n if isinstance(n, int) else 1
            reserve = (requested or self._config.completion_tokens) * n
        prompt = reply.prompt_tokens
        if window is not None and kind != _EMBED and prompt + (requested or 0) > window:
            self._count("context_length_exceeded")
            if anthropic:
                return anthropic_context_error(window, prompt, requested or 0)
            return openai_context_error(window, prompt + (requested or 0))
        if limits is None:
            return None
        rejection = limits.admit(prompt + reserve)
        if rejection is None:
            return None
        self._count("rate_limited")
        if anthropic:
            return anthropic_rejection(rejection)
        return openai_rejection(rejection, str(payload.get("model")))

    async def _answer(
        self, reply: Reply, plan: Plan, stretch: float, peer: Peer, send: Send
    ) -> bool:
        """Send *reply* on schedule, its latency stretched by *stretch*; False if
        the client left first."""
        cut = plan.fault == "cut"
        frames = reply.frames
        tps = plan.tps / stretch if plan.tps else None
        ttft = plan.ttft * stretch
        if frames is None:
            delay = ttft + (reply.tokens / tps if tps else 0.0)
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
        if not await peer.wait(ttft):
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


def _requested(payload: dict[str, Any], anthropic: bool) -> int | None:
    """The completion tokens a valid request asks for at most, if it says."""
    if anthropic:
        value = payload.get("max_tokens")
    else:
        value = payload.get("max_completion_tokens")
        if value is None:
            value = payload.get("max_tokens")
    return value if isinstance(value, int) else None


def _adding_headers(
    send: Send, extra: list[Header], limits: RateLimits | None, anthropic: bool
) -> Send:
    """*send* that adds the rate-limit headers of *limits* and *extra* (both as
    they are when the response starts) to the response's headers."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [*message["headers"], *extra]
            if limits is not None:
                headers += limits.anthropic_headers() if anthropic else limits.openai_headers()
            message = {**message, "headers": headers}
        await send(message)

    return wrapped


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
