"""Turning records into bytes for the shared tiers, and back, safely.

Envelope (16-byte header, little-endian, then the payload)::

    b"hp" | version u8 | flags u8 | expires_at f64 (0 = never) | delta f32
    [tags: u32 length + msgpack list of str, when flag bit 5 is set] | payload

``flags`` low bits give the payload format (raw bytes, msgpack, pickle); bit 4
says the payload is zstd-compressed; bit 5 says tags follow the header.

No pickle by default: a cache shared between processes is a place where one
compromised writer could otherwise run code in every reader. Pickle is opt-in
(``Codec(pickle=True)``) for deployments where every writer is trusted; a reader
without it treats pickled entries as misses.

Bytes that are not a valid envelope of this version (corrupt, truncated, written
by something else, or pickled while pickle is off) decode to ``None`` (a miss)
and log a warning; they never raise.

msgpack rather than orjson: orjson is ~2x faster on our payloads (0.7 vs 1.6 us
round trip for a chat completion) but turns NaN into null and cannot hold bytes,
and both costs are small next to a Redis round trip (~40 us).
"""

from __future__ import annotations

import logging
import math
import pickle
import struct

import msgpack
import zstandard

from hotpath._errors import CodecError, ConfigError, short_repr
from hotpath.cache._record import Record
from hotpath.cache._validate import check_count

__all__ = ["Codec"]

log = logging.getLogger("hotpath.cache")

_MAGIC = b"hp"
_VERSION = 1
_HEADER = struct.Struct("<2sBBdf")
_RAW, _MSGPACK, _PICKLE = 0, 1, 2
_FORMAT_MASK = 0x0F
_ZSTD = 0x10
_TAGS = 0x20
_U32 = struct.Struct("<I")


class Codec:
    """Encodes :class:`Record` values to versioned bytes and back.

    ``compress_min_bytes``: payloads at least this large are zstd-compressed
    (at ``compress_level``) when that makes them smaller.
    """

    __slots__ = ("_cctx_level", "compress_min_bytes", "pickle")

    def __init__(
        self,
        *,
        pickle: bool = False,
        compress_min_bytes: int = 1024,
        compress_level: int = 3,
    ) -> None:
        if not isinstance(pickle, bool):
            raise ConfigError(f"pickle must be True or False, got {pickle!r}")
        check_count(compress_min_bytes, "compress_min_bytes")
        if (
            isinstance(compress_level, bool)
            or not isinstance(compress_level, int)
            or not 1 <= compress_level <= 22
        ):
            raise ConfigError(f"compress_level must be an int in 1..22, got {compress_level!r}")
        self.pickle = pickle
        self.compress_min_bytes = compress_min_bytes
        self._cctx_level = compress_level

    def __repr__(self) -> str:
        return (
            f"Codec(pickle={self.pickle!r}, compress_min_bytes={self.compress_min_bytes!r}, "
            f"compress_level={self._cctx_level!r})"
        )

    # -- values ---------------------------------------------------------------

    def dumps(self, value: object) -> tuple[int, bytes]:
        """``(format, payload)`` for ``value``; raises :class:`CodecError` if it cannot."""
        if type(value) is bytes:
            return _RAW, value
        try:
            return _MSGPACK, msgpack.packb(value, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            if self.pickle:
                try:
                    return _PICKLE, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
                except Exception as pexc:
                    raise CodecError(
                        "value cannot be encoded, even with pickle: "
                        f"{type(value).__name__} {short_repr(value)}"
                    ) from pexc
            raise CodecError(
                f"value cannot be encoded: {type(value).__name__} {short_repr(value)} ({exc}); "
                "cache str, bytes, numbers, bool, None, lists and dicts of them, or pass "
                "Codec(pickle=True) if every writer to this cache is trusted"
            ) from exc

    def loads(self, fmt: int, payload: bytes) -> object:
        """The value of a ``(format, payload)`` pair; raises ``ValueError`` if it is unusable."""
        if fmt == _RAW:
            return payload
        if fmt == _MSGPACK:
            return msgpack.unpackb(payload, raw=False, strict_map_key=False)
        if fmt == _PICKLE:
            if not self.pickle:
                raise ValueError("entry is pickled but this codec does not trust pickle")
            return pickle.loads(payload)  # noqa: S301 - opt-in, every writer trusted
        raise ValueError(f"unknown payload format {fmt}")

    # -- records --------------------------------------------------------------

    def encode(self, record: Record) -> bytes:
        """The envelope bytes of ``record``; raises :class:`CodecError` for an unencodable value."""
        fmt, payload = self.dumps(record.value)
        flags = fmt
        if len(payload) >= self.compress_min_bytes:
            packed = zstandard.compress(payload, self._cctx_level)
            if len(packed) < len(payload):
                payload, flags = packed, flags | _ZSTD
        expires = 0.0 if record.expires_at is None else record.expires_at
        delta = record.delta if math.isfinite(record.delta) and record.delta > 0 else 0.0
        if record.tags:
            tags = msgpack.packb(list(record.tags), use_bin_type=True)
            header = _HEADER.pack(_MAGIC, _VERSION, flags | _TAGS, expires, delta)
            return b"".join((header, _U32.pack(len(tags)), tags, payload))
        return _HEADER.pack(_MAGIC, _VERSION, flags, expires, delta) + payload

    def decode(self, data: bytes, key: str = "?") -> Record | None:
        """The record in ``data``, or ``None`` (logged) if it is corrupt or foreign."""
        try:
            if len(data) < _HEADER.size:
                raise ValueError(f"{len(data)} bytes is shorter than the envelope header")
            magic, version, flags, expires, delta = _HEADER.unpack_from(data)
            if magic != _MAGIC:
                raise ValueError("not a hotpath envelope")
            if version != _VERSION:
                raise ValueError(f"envelope version {version} is not {_VERSION}")
            start = _HEADER.size
            tags: tuple[str, ...] = ()
            if flags & _TAGS:
                (length,) = _U32.unpack_from(data, start)
                start += _U32.size
                raw_tags = msgpack.unpackb(data[start : start + length], raw=False)
                if not isinstance(raw_tags, list) or not all(isinstance(t, str) for t in raw_tags):
                    raise ValueError("envelope tags are not a list of str")
                tags = tuple(raw_tags)
                start += length
            payload = data[start:] if start else data
            if flags & _ZSTD:
                payload = zstandard.decompress(payload)
            value = self.loads(flags & _FORMAT_MASK, payload)
        except Exception as exc:  # noqa: BLE001 - any bad bytes read as a miss
            log.warning("cache entry %r is unreadable, treating it as a miss: %s", key, exc)
            return None
        return Record(value, None if expires == 0.0 else expires, float(delta), tags)
