"""Tier URLs: ``memory://``, ``redis://``, ``rediss://``, ``sqlite:///path``.

Each backend parses its own URL (``Tier.from_url``); this module maps a scheme to
its backend and holds the small parsers they share, which name the bad query
parameter and its value in the :class:`~hotpath.ConfigError` they raise.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from hotpath._errors import ConfigError

if TYPE_CHECKING:
    from hotpath._clock import Clock
    from hotpath.cache._codec import Codec
    from hotpath.cache._tier import Tier

__all__ = [
    "parse_bool",
    "parse_float",
    "parse_int",
    "parse_options",
    "parse_query",
    "parse_size",
    "tier_from_url",
]

# scheme -> (module, class). Imported lazily so that a URL names only what it uses.
_BACKENDS: Mapping[str, tuple[str, str]] = {
    "memory": ("hotpath.cache._memory", "MemoryTier"),
    "redis": ("hotpath.cache._redis", "RedisTier"),
    "rediss": ("hotpath.cache._redis", "RedisTier"),
    "unix": ("hotpath.cache._redis", "RedisTier"),
    "sqlite": ("hotpath.cache._sqlite", "SQLiteTier"),
}


def tier_from_url(url: str, *, clock: Clock | None = None, codec: Codec | None = None) -> Tier:
    """Build the tier a URL names, e.g. ``tier_from_url("redis://127.0.0.1:6379/0")``."""
    if not isinstance(url, str):
        raise ConfigError(f"tier URL must be a str, got {type(url).__name__} {url!r}")
    scheme = urlsplit(url).scheme.lower()
    try:
        module_name, class_name = _BACKENDS[scheme]
    except KeyError:
        known = ", ".join(f"{s}://" for s in _BACKENDS)
        raise ConfigError(
            f"unknown cache tier URL scheme {scheme!r} in {url!r}; known: {known}"
        ) from None
    cls = getattr(importlib.import_module(module_name), class_name)
    tier: Tier = cls.from_url(url, clock=clock, codec=codec)
    return tier


def parse_options(
    url: str, parsers: Mapping[str, Callable[[str, str], Any]], *, passed_on: Iterable[str] = ()
) -> dict[str, Any]:
    """Keyword arguments from ``url``'s query: each parameter named in ``parsers`` is
    parsed by ``parsers[name](text, name)``. ``passed_on`` names parameters allowed
    but left for someone else (redis-py's own, say). Anything else is a ConfigError."""
    params = parse_query(url, {*parsers, *passed_on})
    return {name: parsers[name](text, name) for name, text in params.items() if name in parsers}


def parse_query(url: str, allowed: set[str]) -> dict[str, str]:
    """The query parameters of ``url``; an unknown or repeated one is a ConfigError."""
    out: dict[str, str] = {}
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True, strict_parsing=False):
        if name not in allowed:
            raise ConfigError(
                f"unknown parameter {name!r} in cache URL {url!r}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        if name in out:
            raise ConfigError(f"parameter {name!r} given twice in cache URL {url!r}")
        out[name] = value
    return out


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_size(value: str | int, name: str) -> int:
    """Bytes from ``123``, ``"64KB"``, ``"256MB"``, ``"1.5GiB"`` (KiB/MiB/GiB are powers of 2)."""
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a size such as 256MB, got {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise ConfigError(f"{name} must be > 0, got {value!r}")
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ConfigError(f"{name} must be a size such as 256MB, got {value!r}")
    number, unit = float(m.group(1)), (m.group(2) or "").lower()
    base = unit[:1] if unit[:1] in "kmgt" else ""
    mult = 1024 ** "kmgt".index(base) * 1024 if base and "i" in unit else _UNITS[base]
    size = int(number * mult)
    if size <= 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")
    return size


def parse_int(value: str, name: str, *, minimum: int = 1) -> int:
    try:
        out = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None
    if out < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value!r}")
    return out


def parse_float(value: str, name: str, *, minimum: float = 0.0) -> float:
    try:
        out = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(out) or out < minimum:
        raise ConfigError(f"{name} must be a finite number >= {minimum}, got {value!r}")
    return out


def parse_bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")
