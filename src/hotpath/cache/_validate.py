"""Early, precise rejection of bad keys, TTLs and tags, and of bad options.

Call arguments (key, ttl, tags) raise the cache's own errors; constructor options
raise :class:`~hotpath.ConfigError` (the checks in :mod:`hotpath._options`, shared
with the gateway). Every message names the argument and shows the value received.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from hotpath._errors import InvalidKeyError, InvalidTTLError
from hotpath._options import check_count, check_non_negative, check_positive

__all__ = [
    "check_count",
    "check_key",
    "check_non_negative",
    "check_positive",
    "check_tags",
    "check_ttl",
]


def check_key(key: object, arg: str = "key") -> str:
    """Return ``key`` as ``str``; bytes must be UTF-8 (they name the same entry as the str)."""
    if type(key) is str:
        return key
    if isinstance(key, str):
        return str(key)
    if isinstance(key, bytes | bytearray | memoryview):
        try:
            return bytes(key).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidKeyError(f"{arg} must be str or UTF-8 bytes, got {key!r}") from None
    raise InvalidKeyError(f"{arg} must be str or bytes, got {type(key).__name__} {key!r}")


def check_ttl(ttl: object, arg: str = "ttl") -> float | None:
    """Return ``ttl`` as float seconds, or ``None`` (no expiry)."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise InvalidTTLError(
            f"{arg} must be a positive number of seconds or None, got {type(ttl).__name__} {ttl!r}"
        )
    value = float(ttl)
    if not math.isfinite(value) or value <= 0:
        raise InvalidTTLError(f"{arg} must be a positive, finite number of seconds, got {ttl!r}")
    return value


def check_tags(tags: Iterable[object] | None, arg: str = "tags") -> tuple[str, ...]:
    """Return ``tags`` as a tuple of non-empty str (bytes decoded as UTF-8)."""
    if tags is None:
        return ()
    if isinstance(tags, str | bytes):
        raise InvalidKeyError(
            f"{arg} must be a list of tags, not a single {type(tags).__name__} {tags!r}"
        )
    out = []
    for i, tag in enumerate(tags):
        t = check_key(tag, f"{arg}[{i}]")
        if not t:
            raise InvalidKeyError(f"{arg}[{i}] must not be empty, got {tag!r}")
        out.append(t)
    return tuple(out)
