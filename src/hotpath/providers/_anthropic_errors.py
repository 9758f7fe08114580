"""Errors of the Anthropic translation layer, and Anthropic error bodies as OpenAI ones.

Where they sit in the hotpath tree::

    HotpathError
    ├── TranslationError          (also ValueError) the client's OpenAI request cannot be
    │                             expressed as an Anthropic one; ``param`` names the JSON path
    └── UpstreamError
        ├── UpstreamProtocolError (also ValueError) Anthropic answered with something that
        │                         is not a Messages API response or stream event
        ├── UpstreamStreamError   Anthropic sent an ``error`` event in the middle of a stream
        └── UpstreamStreamCutError     the stream ended before ``message_stop`` (hotpath's own)

A gateway answers a :class:`TranslationError` with HTTP 400 (it is the client's
request) and the others as upstream failures (it is the upstream's answer).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hotpath._errors import HotpathError, UpstreamError

__all__ = [
    "TranslationError",
    "UpstreamProtocolError",
    "UpstreamStreamError",
    "anthropic_error_to_openai",
]


class TranslationError(HotpathError, ValueError):
    """An OpenAI chat request that cannot be translated to an Anthropic Messages request.

    ``param`` is the JSON path of the offending field (``messages[2].tool_calls[0]
    .function.arguments``), or ``None`` when the request as a whole is at fault; it
    fills the ``param`` of the OpenAI error body the gateway returns.
    """

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class UpstreamProtocolError(UpstreamError, ValueError):
    """Anthropic's response or stream event does not have the Messages API shape."""


class UpstreamStreamError(UpstreamError):
    """Anthropic reported an error (an ``error`` event) in the middle of a stream.

    ``type`` is Anthropic's error type (``overloaded_error``, ``api_error`` ...) and
    ``message`` its human-readable message; :func:`anthropic_error_to_openai` turns
    ``{"error": {"type": type, "message": message}}`` into the OpenAI error body.
    """

    def __init__(self, type: str, message: str, *, upstream: str = "") -> None:
        super().__init__(f"{type}: {message}", upstream=upstream)
        self.type = type
        self.message = message


# Anthropic error type -> (OpenAI error type, OpenAI error code). Kept close to what
# OpenAI itself sends for the same condition, so client retry logic keeps working.
_ERROR_TYPES: dict[str, tuple[str, str | None]] = {
    "invalid_request_error": ("invalid_request_error", None),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    "authentication_error": ("authentication_error", None),
    "permission_error": ("permission_error", None),
    "billing_error": ("insufficient_quota", "insufficient_quota"),
    "not_found_error": ("not_found_error", None),
    "rate_limit_error": ("rate_limit_error", "rate_limit_exceeded"),
    "timeout_error": ("server_error", "timeout"),
    "api_error": ("server_error", None),
    "overloaded_error": ("server_error", "overloaded"),
}

# Used when the body does not say (empty, HTML from a proxy, an unknown type).
_STATUS_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_error_to_openai(status: int, body: Mapping[str, Any] | None) -> dict[str, Any]:
    """The OpenAI error body for an Anthropic error answer with HTTP ``status``.

    ``body`` is the parsed Anthropic body, normally ``{"type": "error", "error":
    {"type": ..., "message": ...}}``. Any other shape, or ``None`` (no body, or not
    JSON), is tolerated: the type then follows from ``status`` and the message says
    which status the upstream returned. The result is ``{"error": {"message", "type",
    "param": None, "code"}}``; choosing the HTTP status to send is the caller's job.
    """
    kind: object = None
    message: object = None
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            kind = error.get("type")
            message = error.get("message")
        elif isinstance(error, str):
            message = error
        else:
            message = body.get("message")
    if not isinstance(kind, str) or kind not in _ERROR_TYPES:
        kind = _STATUS_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    if not isinstance(message, str) or not message:
        message = f"upstream returned HTTP {status}"
    openai_type, code = _ERROR_TYPES[kind]
    return {"error": {"message": message, "type": openai_type, "param": None, "code": code}}
