"""Raw ASGI plumbing: reading bodies, sending replies, noticing disconnects."""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field

import orjson

from hotpath._asgi_types import Message, Receive, Scope, Send

__all__ = [
    "CutConnection",
    "Header",
    "Peer",
    "Receive",
    "Reply",
    "Scope",
    "Send",
    "anthropic_error",
    "install_cut_log_filter",
    "json_reply",
    "openai_error",
    "read_body",
    "send_reply",
]

Header = tuple[bytes, bytes]

JSON_TYPE: Header = (b"content-type", b"application/json")
SSE_HEADERS: list[Header] = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]


class CutConnection(Exception):  # noqa: N818 - a signal to the server, not an error
    """Raised by the app after a partial response so uvicorn drops the connection."""


class _DropCutRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, CutConnection)


_CUT_FILTER = _DropCutRecords()


def install_cut_log_filter() -> None:
    """Keep uvicorn from logging a traceback for every deliberately cut connection."""
    logger = logging.getLogger("uvicorn.error")
    if _CUT_FILTER not in logger.filters:
        logger.addFilter(_CUT_FILTER)


@dataclass(slots=True)
class Reply:
    """A response: a complete ``body``, or SSE ``frames`` for a stream.

    Stream frame ``i`` is due ``i / tps`` after the first; ``tokens`` is how many
    tokens a non-streaming body took to "generate" (for the ``tps`` delay);
    ``prompt_tokens`` how many the request's input counts (for rate limits and
    context windows).
    """

    status: int = 200
    body: bytes = b""
    frames: list[bytes] | None = None
    tokens: int = 0
    headers: list[Header] = field(default_factory=list)
    prompt_tokens: int = 0


def json_reply(payload: object, status: int = 200, headers: list[Header] | None = None) -> Reply:
    return Reply(status, orjson.dumps(payload), headers=headers or [])


def openai_error(
    status: int,
    message: str,
    kind: str = "invalid_request_error",
    *,
    param: str | None = None,
    code: str | None = None,
    headers: list[Header] | None = None,
) -> Reply:
    """An error in OpenAI's shape: ``{"error": {message, type, param, code}}``."""
    error = {"message": message, "type": kind, "param": param, "code": code}
    return json_reply({"error": error}, status, headers)


def anthropic_error(
    status: int,
    message: str,
    kind: str = "invalid_request_error",
    headers: list[Header] | None = None,
) -> Reply:
    """An error in Anthropic's shape: ``{"type": "error", "error": {type, message}}``."""
    return json_reply(
        {"type": "error", "error": {"type": kind, "message": message}}, status, headers
    )


async def read_body(receive: Receive) -> bytes:
    """The whole request body."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return body
    parts = [body]
    while message.get("more_body"):
        message = await receive()
        parts.append(message.get("body", b""))
    return b"".join(parts)


async def send_reply(send: Send, reply: Reply) -> None:
    """Send a complete (non-streaming) reply."""
    body = reply.body
    headers = [JSON_TYPE, (b"content-length", b"%d" % len(body)), *reply.headers]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _wake(waiter: asyncio.Future[None], _: object = None) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Peer:
    """Notices when the client of one request goes away.

    Once the request body is read, the ASGI ``receive()`` only returns when the
    client disconnects (or the response is complete), so one watcher task per
    request, started lazily on the first wait, is enough.
    """

    __slots__ = ("_receive", "_watch")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._watch: asyncio.Future[Message] | None = None

    async def wait(self, delay: float | None) -> bool:
        """Wait *delay* seconds (``None``: until the client leaves).

        Returns ``False`` as soon as the client has disconnected, ``True`` once the
        delay has passed with the client still there.
        """
        watch = self._watch
        if watch is None:
            if delay is not None and delay <= 0:
                return True
            watch = self._watch = asyncio.ensure_future(self._receive())
        if watch.done():
            return False
        if delay is not None and delay <= 0:
            return True
        # A future woken by the timer or by the watcher: cheaper than asyncio.wait.
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        wake = functools.partial(_wake, waiter)
        watch.add_done_callback(wake)
        timer = None if delay is None else loop.call_later(delay, _wake, waiter)
        try:
            await waiter
        finally:
            watch.remove_done_callback(wake)
            if timer is not None:
                timer.cancel()
        return not watch.done()

    def close(self) -> None:
        """Stop watching; call when the request is over."""
        watch = self._watch
        if watch is not None and not watch.done():
            watch.cancel()
