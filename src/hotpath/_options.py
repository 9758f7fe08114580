"""Checks of option values: each raises :class:`~hotpath.ConfigError` naming the
option and showing the value received. Shared by the cache and the gateway."""

from __future__ import annotations

import math
from urllib.parse import urlsplit

from hotpath._errors import ConfigError

__all__ = [
    "check_bool",
    "check_count",
    "check_http_url",
    "check_non_negative",
    "check_positive",
    "check_text",
]


def check_positive(value: object, name: str) -> float:
    """``value`` as a finite float > 0 (seconds, sizes of steps ...)."""
    out = _finite(value, name, "a positive number")
    if out <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    return out


def check_non_negative(value: object, name: str) -> float:
    """``value`` as a finite float >= 0."""
    out = _finite(value, name, "a number >= 0")
    if out < 0:
        raise ConfigError(f"{name} must be a number >= 0, got {value!r}")
    return out


def check_count(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (bools are not counts)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _finite(value: object, name: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name} must be {what}, got {type(value).__name__} {value!r}")
    return float(value)


def check_text(value: object, name: str) -> str:
    """``value`` as a non-empty string."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
    return value


def check_bool(value: object, name: str) -> bool:
    """``value`` as a bool (``true`` or ``false`` in TOML; no 0/1, no strings)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return value


def check_http_url(value: object, name: str) -> str:
    """``value`` as an absolute http(s) URL."""
    url = check_text(value, name)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http(s) URL, got {url!r}")
    return url
