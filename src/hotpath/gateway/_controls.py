"""Per-request cache controls, from HTTP headers.

- ``Cache-Control: no-cache``: do not answer from the cache; still store the answer.
- ``Cache-Control: no-store``: neither answer from nor store into the cache.
- ``Cache-Control: max-age=N``: only a cached answer at most N seconds old will do
  (HTTP's request semantics); an older one is replaced by a fresh call.
- ``x-hotpath-cache-ttl: N``: store the answer for N seconds (default: the config).
- ``x-hotpath-cache-namespace: NAME``: a separate key space (per agent, per test run).

Other Cache-Control directives are ignored, as HTTP caches do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hotpath._errors import short_repr
from hotpath.gateway._api_errors import ApiError
from hotpath.gateway._asgi import Request

__all__ = ["CacheControls", "parse_controls"]


@dataclass(frozen=True, slots=True)
class CacheControls:
    lookup: bool = True
    store: bool = True
    max_age: float | None = None
    ttl: float | None = None
    namespace: str = ""


DEFAULT = CacheControls()


def _seconds(text: str, header: str, *, zero_ok: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise ApiError(
            400,
            f"header {header} must be a {'non-negative' if zero_ok else 'positive'} "
            f"number of seconds, got {short_repr(text)}",
            param=header,
            code="invalid_header",
        )
    return value


def parse_controls(request: Request) -> CacheControls:
    headers = request.headers
    control = headers.get(b"cache-control")
    ttl_text = headers.get(b"x-hotpath-cache-ttl")
    namespace = headers.get(b"x-hotpath-cache-namespace")
    if control is None and ttl_text is None and namespace is None:
        return DEFAULT
    lookup = store = True
    max_age = None
    if control is not None:
        for part in control.decode("latin-1").lower().split(","):
            directive, _, value = part.strip().partition("=")
            if directive == "no-cache":
                lookup = False
            elif directive == "no-store":
                lookup = store = False
            elif directive == "max-age":
                max_age = _seconds(value.strip('"'), "cache-control max-age", zero_ok=True)
    ttl = None
    if ttl_text is not None:
        ttl = _seconds(ttl_text.decode("latin-1"), "x-hotpath-cache-ttl", zero_ok=False)
    ns = ""
    if namespace is not None:
        ns = namespace.decode("latin-1").strip()
        if not ns or len(ns) > 200:
            raise ApiError(
                400,
                "header x-hotpath-cache-namespace must be 1 to 200 characters, "
                f"got {short_repr(ns)}",
                param="x-hotpath-cache-namespace",
                code="invalid_header",
            )
    return CacheControls(lookup=lookup, store=store, max_age=max_age, ttl=ttl, namespace=ns)
