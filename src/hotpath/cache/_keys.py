"""Stable cache keys from Python values.

A key must be identical in every process, on every machine and under every
Python version that shares the cache, so it cannot rely on ``hash()`` (salted per
process), ``repr()`` (changes between versions) or pickle. Values are written in
a small, type-tagged canonical encoding (dicts and sets sorted by their encoded
items, floats as exact hex) and hashed with BLAKE2b-128: strong enough that two
different argument lists never meet in practice, and ~0.3 us for typical inputs.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import hashlib
import uuid
from collections.abc import Mapping

from hotpath._errors import KeyBuildError

__all__ = ["canonical_bytes", "fingerprint"]


def fingerprint(value: object, arg: str = "value") -> str:
    """The 32-hex-digit BLAKE2b-128 digest of ``value``'s canonical encoding."""
    return hashlib.blake2b(canonical_bytes(value, arg), digest_size=16).hexdigest()


def canonical_bytes(value: object, arg: str = "value") -> bytes:
    """A deterministic, type-tagged encoding of ``value``.

    Raises :class:`KeyBuildError` naming the path of the first part that has no
    stable encoding (e.g. ``kwargs['client']``).
    """
    out: list[bytes] = []
    _encode(value, arg, out, 0)
    return b"".join(out)


def _frame(tag: bytes, data: bytes) -> bytes:
    return b"%s%d:%s" % (tag, len(data), data)


def _encode(value: object, path: str, out: list[bytes], depth: int) -> None:
    if depth > 64:
        raise KeyBuildError(f"{path} is nested too deeply (or is recursive) to be part of a key")
    t = type(value)
    if value is None:
        out.append(b"N")
    elif t is bool:
        out.append(b"T" if value else b"F")
    elif t is str:
        out.append(_frame(b"s", value.encode("utf-8", "surrogatepass")))  # type: ignore[attr-defined]
    elif t is int:
        out.append(f"i{value};".encode())
    elif t is float:
        out.append(_frame(b"f", value.hex().encode()))  # type: ignore[attr-defined]
    elif t is bytes or t is bytearray:
        out.append(_frame(b"b", bytes(value)))  # type: ignore[call-overload]
    elif t is list or t is tuple:
        items: list[object] = list(value)  # type: ignore[call-overload]
        out.append(b"%s%d:" % (b"l" if t is list else b"t", len(items)))
        for i, item in enumerate(items):
            _encode(item, f"{path}[{i}]", out, depth + 1)
    elif isinstance(value, Mapping):
        parts = []
        for k, v in value.items():
            kb = canonical_bytes_at(k, f"{path} key {k!r}", depth + 1)
            vb = canonical_bytes_at(v, f"{path}[{k!r}]", depth + 1)
            parts.append(kb + vb)
        parts.sort()
        out.append(b"d%d:" % len(parts))
        out.extend(parts)
    elif t is set or t is frozenset:
        members = sorted(
            canonical_bytes_at(m, f"{path} member", depth + 1)
            for m in value  # type: ignore[attr-defined]
        )
        out.append(b"S%d:" % len(members))
        out.extend(members)
    elif isinstance(value, enum.Enum):
        out.append(_frame(b"e", _qualname(value).encode()))
        _encode(value.value, f"{path}.value", out, depth + 1)
    elif isinstance(value, datetime.datetime | datetime.date | datetime.time):
        out.append(_frame(b"D", f"{t.__name__}:{value.isoformat()}".encode()))
    elif isinstance(value, datetime.timedelta):
        out.append(_frame(b"td", f"{value.days}:{value.seconds}:{value.microseconds}".encode()))
    elif isinstance(value, decimal.Decimal | uuid.UUID):
        out.append(_frame(b"x", f"{t.__name__}:{value}".encode()))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        out.append(_frame(b"c", _qualname(value).encode()))
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        _encode(fields, path, out, depth + 1)
    elif isinstance(value, str | int | float):  # subclasses: encode as the base value
        base = str if isinstance(value, str) else int if isinstance(value, int) else float
        _encode(base(value), path, out, depth)
    else:
        raise KeyBuildError(
            f"{path} has no stable key encoding: {t.__module__}.{t.__qualname__} {_short(value)}; "
            "pass key=... to @cached, or list the argument in ignore=..."
        )


def canonical_bytes_at(value: object, path: str, depth: int) -> bytes:
    out: list[bytes] = []
    _encode(value, path, out, depth)
    return b"".join(out)


def _qualname(value: object) -> str:
    t = type(value)
    return f"{t.__module__}.{t.__qualname__}"


def _short(value: object, limit: int = 60) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real error
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
