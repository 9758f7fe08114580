"""Messages that keep the L1 of every process sharing a Redis coherent.

A process that sets, deletes or invalidates publishes one small msgpack message
on the Redis tier's events channel; every other process drops the named entries
from its L1. Messages carry the sender's id so a process ignores its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import msgpack

__all__ = ["Invalidation", "decode_message", "encode_message"]

log = logging.getLogger("hotpath.cache")


@dataclass(frozen=True, slots=True)
class Invalidation:
    """Drop ``keys``, every entry tagged with one of ``tags``, or everything (``clear``)."""

    origin: str
    keys: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    clear: bool = False


def encode_message(msg: Invalidation) -> bytes:
    body: dict[str, object] = {"o": msg.origin}
    if msg.keys:
        body["k"] = list(msg.keys)
    if msg.tags:
        body["t"] = list(msg.tags)
    if msg.clear:
        body["c"] = 1
    return msgpack.packb(body, use_bin_type=True)


def decode_message(payload: bytes) -> Invalidation | None:
    """The message in ``payload``, or ``None`` (logged) if it is not one of ours."""
    try:
        body = msgpack.unpackb(payload, raw=False)
        if not isinstance(body, dict) or not isinstance(body.get("o"), str):
            raise ValueError("not an invalidation message")
        keys = body.get("k", [])
        tags = body.get("t", [])
        if not isinstance(keys, list) or not isinstance(tags, list):
            raise ValueError("keys and tags must be lists")
        if not all(isinstance(k, str) for k in keys + tags):
            raise ValueError("keys and tags must be str")
        return Invalidation(body["o"], tuple(keys), tuple(tags), bool(body.get("c")))
    except Exception as exc:  # noqa: BLE001 - a foreign message must not kill the listener
        log.warning("ignoring an unreadable cache invalidation message: %s", exc)
        return None
