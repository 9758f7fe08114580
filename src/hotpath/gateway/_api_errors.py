"""Errors the gateway answers with, in OpenAI's shape.

``{"error": {"message", "type", "param", "code"}}`` with the HTTP status, so an
OpenAI SDK raises the same exception class it would raise against OpenAI.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping

import orjson

from hotpath._errors import (
    CircuitOpenError,
    HotpathError,
    OverloadedError,
    RateLimitedError,
    TrafficError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamStreamCutError,
    UpstreamTimeoutError,
)

__all__ = ["ApiError", "bad_request", "traffic_api_error", "upstream_api_error"]

log = logging.getLogger("hotpath.gateway")


class ApiError(Exception):
    """An error response: ``status`` and the OpenAI error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})
        # An upstream's own error body, passed back untouched when it is OpenAI-shaped.
        self.raw_body: bytes | None = None

    def body(self) -> bytes:
        raw = self.raw_body
        if raw is not None:
            try:
                parsed = orjson.loads(raw)
            except orjson.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
                return raw
            if raw:
                snippet = raw[:200].decode("utf-8", "replace")
                self.message = f"{self.message}: {snippet}"
        return orjson.dumps(
            {
                "error": {
                    "message": self.message,
                    "type": self.type,
                    "param": self.param,
                    "code": self.code,
                }
            }
        )

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.message!r}, code={self.code!r})"


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def upstream_api_error(exc: BaseException) -> ApiError:
    """The response for a failed upstream call."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, TrafficError):
        return traffic_api_error(exc)
    if isinstance(exc, UpstreamStatusError):
        headers = {}
        if exc.retry_after is not None:
            headers["retry-after"] = f"{exc.retry_after:g}"
        err = ApiError(exc.status, str(exc), type="upstream_error", headers=headers)
        err.raw_body = exc.body
        return err
    if isinstance(exc, UpstreamTimeoutError):
        return ApiError(504, str(exc), type="timeout", code="upstream_timeout")
    if isinstance(exc, UpstreamStreamCutError):
        return ApiError(502, str(exc), type="upstream_error", code="upstream_stream_cut")
    if isinstance(exc, UpstreamError):
        return ApiError(502, str(exc), type="upstream_error", code="upstream_unreachable")
    if isinstance(exc, HotpathError) and isinstance(exc, ValueError):
        # A request the upstream's API cannot express (translation refused it).
        return ApiError(400, str(exc), param=getattr(exc, "param", None), code="unsupported")
    if isinstance(exc, asyncio.CancelledError):
        return ApiError(503, "the upstream call was cancelled", type="server_error")
    log.error("upstream call failed unexpectedly", exc_info=exc)
    return ApiError(500, f"internal error: {type(exc).__name__}", type="server_error")


def _retry_after_header(seconds: float | None) -> dict[str, str]:
    if seconds is None or not math.isfinite(seconds):
        return {}
    return {"retry-after": str(max(1, int(seconds + 0.999)))}


def traffic_api_error(exc: TrafficError) -> ApiError:
    """The response for a call traffic control refused."""
    headers = _retry_after_header(exc.retry_after)
    if isinstance(exc, RateLimitedError):
        err = ApiError(
            429, str(exc), type="rate_limit_error", code="rate_limit_exceeded", headers=headers
        )
        err.headers["x-hotpath-rate-limit"] = exc.limit
        return err
    # A 503 always says when to come back (1 s when the policy could not tell, e.g.
    # a half-open breaker whose trial calls are all out).
    headers = headers or _retry_after_header(1.0)
    if isinstance(exc, CircuitOpenError):
        return ApiError(503, str(exc), type="server_error", code="circuit_open", headers=headers)
    if isinstance(exc, OverloadedError):
        return ApiError(503, str(exc), type="server_error", code="overloaded", headers=headers)
    return ApiError(503, str(exc), type="server_error", headers=headers)
