"""The request being served: its id and what it turned out to be, in a contextvar.

The gateway opens a :class:`RequestInfo` for every HTTP request and binds it to
the running task with :func:`bind_request`. Everything that runs on the request's
behalf sees it through :func:`current_request`: log records take its id (the JSON
and text formatters read it), the routes fill in the model, the cache outcome and
the deployment, and the access log line, the metrics and the request's span read
them back at the end. Tasks started while serving a request (a single-flight
call) inherit a reference to the same object, as contextvars do.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from contextlib import AbstractContextManager
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hotpath.observe._tracing import Tracer

__all__ = [
    "NO_SPAN",
    "RequestInfo",
    "bind_request",
    "current_request",
    "current_request_id",
    "new_request_id",
    "request_id_from",
    "span_of",
    "unbind_request",
]

_SANE = re.compile(rb"[A-Za-z0-9._:-]{1,128}")

_current: ContextVar[RequestInfo | None] = ContextVar("hotpath_request", default=None)


def new_request_id() -> str:
    """A fresh request id: 32 random hex digits (as a uuid4's hex, but cheaper)."""
    return os.urandom(16).hex()


def request_id_from(header: bytes | None) -> str:
    """The client's ``x-request-id`` if it is sane (1 to 128 characters of
    ``[A-Za-z0-9._:-]``), else a new id: an id goes into logs and response
    headers, so it must not carry anything a client could use to forge lines."""
    if header is not None and _SANE.fullmatch(header) is not None:
        return header.decode("ascii")
    return new_request_id()


class RequestInfo:
    """One HTTP request as the gateway saw it; filled in while it is served.

    ``cache`` is the outcome the response's ``x-hotpath-cache`` header gives
    (``hit``, ``miss``, ``bypass``, ``partial``), ``""`` for requests that never
    reached the cache. ``upstream_seconds`` sums the time spent in upstream
    attempts made on this request's behalf; ``coalesced`` says the request joined
    another's call instead. ``tracer`` and ``span`` are the gateway's tracer and
    the request's span when tracing is on (``None`` otherwise).
    """

    __slots__ = (
        "cache",
        "coalesced",
        "completion_tokens",
        "cost",
        "deployment",
        "method",
        "model",
        "path",
        "prompt_tokens",
        "request_id",
        "span",
        "started",
        "status",
        "tier",
        "tracer",
        "upstream_seconds",
    )

    def __init__(self, request_id: str, method: str, path: str, started: float) -> None:
        self.request_id = request_id
        self.method = method
        self.path = path
        self.started = started  # time.perf_counter() at arrival
        self.status = 0
        self.model = ""
        self.cache = ""
        self.tier = ""
        self.deployment = ""
        self.coalesced = False
        self.upstream_seconds = 0.0
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.cost: float | None = None
        self.span: Any = None
        self.tracer: Tracer | None = None

    def __repr__(self) -> str:
        return (
            f"RequestInfo({self.request_id!r}, {self.method} {self.path}, "
            f"status={self.status}, model={self.model!r}, cache={self.cache!r})"
        )


#: What :func:`span_of` gives when the request is not traced: a reusable no-op.
NO_SPAN: contextlib.nullcontext[None] = contextlib.nullcontext()


def span_of(
    info: RequestInfo | None, name: str, attributes: Mapping[str, Any] | None = None
) -> AbstractContextManager[Any]:
    """A child span of the request's current span, or :data:`NO_SPAN` (which
    yields ``None``) when the request is not traced."""
    if info is None or info.tracer is None:
        return NO_SPAN
    return info.tracer.span(name, attributes)


def bind_request(info: RequestInfo) -> Token[RequestInfo | None]:
    """Make ``info`` the current request of this task (and of tasks it starts)."""
    return _current.set(info)


def unbind_request(token: Token[RequestInfo | None]) -> None:
    _current.reset(token)


def current_request() -> RequestInfo | None:
    """The request being served by this task, if any."""
    return _current.get()


def current_request_id() -> str | None:
    info = _current.get()
    return None if info is None else info.request_id
