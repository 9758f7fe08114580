"""The little of ASGI the gateway needs: a request view, body reading, responses.

Written against the raw ASGI interface rather than a framework: the gateway has a
handful of routes, and a framework's routing and request objects would add tens of
microseconds to a cache hit that otherwise costs a few (docs/gateway.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from hotpath._asgi_types import Receive, Scope, Send
from hotpath.gateway._api_errors import ApiError

__all__ = [
    "Receive",
    "Request",
    "Scope",
    "Send",
    "read_body",
    "send_bytes",
    "watch_disconnect",
]

Headers = list[tuple[bytes, bytes]]

JSON = b"application/json"


class Request:
    """One HTTP request: the scope's method, path, query string and headers
    (lower-cased)."""

    __slots__ = ("headers", "method", "path", "query", "receive", "send")

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query: bytes = scope.get("query_string", b"")
        self.headers: dict[bytes, bytes] = dict(scope["headers"])
        self.receive = receive
        self.send = send

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole request body; 413 if it is (or claims to be) over ``limit`` bytes."""
    declared = request.headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    receive = request.receive
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise _too_large(len(body), limit)
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise asyncio.CancelledError("client disconnected while sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        parts.append(chunk)
    return b"".join(parts)


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(
        413,
        f"request body of {size} bytes is over the limit of {limit} bytes",
        code="request_too_large",
    )


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    headers: Iterable[tuple[bytes, bytes]] = (),
    content_type: bytes = JSON,
) -> None:
    """A whole response (JSON unless ``content_type`` says otherwise)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, error: ApiError, headers: Headers | None = None) -> None:
    extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items()]
    await send_bytes(send, error.status, error.body(), [*extra, *(headers or [])])


def watch_disconnect(request: Request) -> asyncio.Task[None]:
    """A task that cancels the current task when the client disconnects.

    Call it once the body has been read; cancel the returned task when done.
    """
    current = asyncio.current_task()
    receive = request.receive

    async def watch() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if current is not None:
                    current.cancel("client disconnected")
                return

    return asyncio.get_running_loop().create_task(watch())
