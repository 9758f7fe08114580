"""Cache keys for requests: a strong hash of a canonical form of what changes the answer.

The canonical form is the request body without the fields that cannot change the
answer (``_CHAT_IGNORED``), serialized by orjson with sorted keys: compact,
UTF-8, shortest round-trip floats. That is the same bytes on every machine,
process and Python version (fixed vectors in the tests pin it). Integral floats in
the top-level sampling fields are written as integers, so ``"temperature": 0`` and
``0.0`` share an entry. Fields we do not know are kept: an unknown field may
change the answer, so it must change the key.

The key also binds the tenant (unless the cache is shared), the caller's
namespace and the deployment that answers (upstream kind and model), so a changed
model map never serves another model's answers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["KEY_VERSION", "chat_key", "embedding_key", "is_sampled"]

KEY_VERSION = b"hp-key-1"

_CHAT_IGNORED = frozenset(
    {
        "stream",  # a cached answer replays either way
        "stream_options",
        "user",  # end-user id for abuse tracking
        "safety_identifier",
        "store",  # stored-completions bookkeeping
        "metadata",
        "service_tier",  # latency and price, not content
        "prompt_cache_key",  # the provider's own prefix-cache hint
    }
)
_NUMERIC = ("temperature", "top_p", "presence_penalty", "frequency_penalty")


def _digest(parts: tuple[bytes, ...]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.hexdigest()


def chat_key(
    body: Mapping[str, Any],
    *,
    deployment: str,
    tenant: str = "",
    namespace: str = "",
    prefix: str = "hp",
) -> str:
    """The cache key of a chat-completions request body."""
    canon = {k: v for k, v in body.items() if k not in _CHAT_IGNORED}
    canon.pop("model", None)  # ``deployment`` names what answers
    for name in _NUMERIC:
        value = canon.get(name)
        if type(value) is float and value.is_integer() and abs(value) < 2**63:
            canon[name] = int(value)
    blob = orjson.dumps(canon, option=orjson.OPT_SORT_KEYS)
    digest = _digest(
        (KEY_VERSION, b"chat", tenant.encode(), namespace.encode(), deployment.encode(), blob)
    )
    return f"{prefix}:chat:{digest}"


def embedding_key(
    item: str | list[int],
    *,
    deployment: str,
    dimensions: int | None,
    tenant: str = "",
    namespace: str = "",
    prefix: str = "hp",
) -> str:
    """The cache key of one embedding input (text or token ids)."""
    blob = orjson.dumps(item)
    dims = b"" if dimensions is None else str(dimensions).encode()
    digest = _digest(
        (KEY_VERSION, b"emb", tenant.encode(), namespace.encode(), deployment.encode(), dims, blob)
    )
    return f"{prefix}:emb:{digest}"


def is_sampled(body: Mapping[str, Any]) -> bool:
    """Whether the request samples: ``temperature`` above 0, or left out (the API's
    default is 1)."""
    temperature = body.get("temperature", 1)
    return temperature is None or temperature != 0
