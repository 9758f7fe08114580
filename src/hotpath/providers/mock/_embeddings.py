"""OpenAI embeddings: deterministic unit vectors, float or base64."""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import struct
import sys
from array import array
from typing import Any

import orjson

from hotpath._tokens import encoder_for
from hotpath.providers.mock._http import Reply, openai_error
from hotpath.providers.mock._openai import Context

__all__ = ["embed", "embeddings"]

_MAX_INPUTS = 2048


@functools.lru_cache(maxsize=64)
def _patterns(dims: int) -> tuple[int, int, int, int, int, int]:
    # Components come in pairs (a, b) or (b, a) with a^2 + b^2 = 2/dims, each with
    # a random sign, so every vector has norm 1 and is built with big-int bit ops
    # on whole float32 arrays instead of a Python loop per component.
    lanes = dims // 2
    a, b, c = (_f32_bits(math.sqrt(share / dims)) for share in (1.6, 0.4, 1.0))

    def repeat(lane: int) -> int:
        return int.from_bytes(lane.to_bytes(8, "little") * lanes, "little")

    ab = repeat(a | b << 32)
    return lanes, ab, ab ^ repeat(b | a << 32), repeat(1), repeat(1 << 31 | 1 << 63), c


def _f32_bits(value: float) -> int:
    bits: int = struct.unpack("<I", struct.pack("<f", value))[0]
    return bits


def embed(model: str, item: str | list[int], dimensions: int) -> array[float]:
    """The float32 unit vector of *item* under *model*, derived from SHAKE-256 of
    the pair: same inputs, same vector; different inputs, near-orthogonal ones.

    Components are +-sqrt(1.6/d) and +-sqrt(0.4/d) in pairs (plus one +-sqrt(1/d)
    when d is odd), so the norm is exactly 1 up to float32 rounding.
    """
    lanes, ab, flip, low, signs, c = _patterns(dimensions)
    raw = hashlib.shake_256(orjson.dumps([model, item])).digest(8 * lanes + 1)
    bits = int.from_bytes(raw[:-1], "little")
    # (bits & low) is 0 or 1 per 64-bit lane; times 2**64-1 it becomes a lane mask.
    lanes_bits = (ab ^ (flip & ((bits & low) * 0xFFFFFFFFFFFFFFFF))) | (bits & signs)
    buf = lanes_bits.to_bytes(8 * lanes, "little")
    if dimensions % 2:
        buf += struct.pack("<I", c | (raw[-1] & 1) << 31)
    vector = array("f")
    vector.frombytes(buf)
    if sys.byteorder == "big":
        vector.byteswap()
    return vector


def _items(value: object) -> list[str | list[int]] | None:
    """The input as a list of strings or a list of token lists; None when invalid."""
    if isinstance(value, str):
        return [value] if value else None
    if not isinstance(value, list) or not value or len(value) > _MAX_INPUTS:
        return None
    if all(isinstance(v, str) and v for v in value):
        return value
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return [value]
    if all(
        isinstance(v, list) and v and all(isinstance(t, int) and not isinstance(t, bool) for t in v)
        for v in value
    ):
        return value
    return None


def embeddings(ctx: Context, payload: Any) -> Reply:
    """``POST /v1/embeddings``."""
    if not isinstance(payload, dict):
        return openai_error(400, "The request body must be a JSON object.")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        return openai_error(400, "you must provide a model parameter", param="model")
    items = _items(payload.get("input"))
    if items is None:
        return openai_error(
            400,
            "'$.input' is invalid: expected a non-empty string, array of non-empty strings, "
            f"array of tokens or array of token arrays (at most {_MAX_INPUTS} items).",
            param="input",
        )
    dims = payload.get("dimensions")
    if dims is None:
        dims = ctx.config.embedding_dimensions
    elif not isinstance(dims, int) or isinstance(dims, bool) or not 1 <= dims <= 65536:
        return openai_error(400, f"Invalid value for 'dimensions': {dims!r}.", param="dimensions")
    fmt = payload.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        return openai_error(
            400, f"Invalid value for 'encoding_format': {fmt!r}.", param="encoding_format"
        )
    encoder = encoder_for(model)
    tokens = 0
    data = []
    for index, item in enumerate(items):
        tokens += encoder.count(item) if isinstance(item, str) else len(item)
        vector = embed(model, item, dims)
        if fmt == "float":
            value: object = vector.tolist()
        else:
            if sys.byteorder == "big":  # OpenAI's base64 is little-endian float32
                vector.byteswap()
            value = base64.b64encode(vector.tobytes()).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    body = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return Reply(body=orjson.dumps(body), prompt_tokens=tokens)
