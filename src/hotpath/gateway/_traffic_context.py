"""One request's traffic-control state, and what an upstream answer says about
tokens and context windows."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from hotpath._errors import UpstreamStatusError
from hotpath.cost._usage import Usage
from hotpath.traffic._gcra import Rate

__all__ = ["CallContext", "Reservation", "is_context_error", "usage_tokens"]


@dataclass(slots=True)
class Reservation:
    """Tokens reserved against ``limits`` before a call, settled once after it."""

    tokens: int
    limits: list[tuple[str, Rate]]
    settled: bool = False


@dataclass(slots=True)
class CallContext:
    """One request's traffic parameters, and what its upstream calls did."""

    priority: str
    max_wait: float
    tokens: int = 0  # reserved against token limits: prompt and completion ceiling
    context_tokens: int = 0  # what must fit the model's window: prompt and max_tokens
    deadline: float = 0.0
    attempts: int = 0
    deployment: str = ""
    model: str = ""
    fallbacks: list[str] = field(default_factory=list)
    first_byte: float | None = None
    used_tokens: int | None = None  # the answer's usage, set by the attempt
    usage: Usage | None = None  # the answer's usage as the upstream reported it
    upstream_model: str = ""  # the model name the answering deployment knows

    def headers(self) -> list[tuple[bytes, bytes]]:
        """What the response says about routing: the deployment that answered,
        the tries it took and the fallbacks taken."""
        out = [
            (b"x-hotpath-deployment", self.deployment.encode()),
            (b"x-hotpath-attempts", str(self.attempts).encode()),
        ]
        if self.fallbacks:
            out.append((b"x-hotpath-model", self.model.encode()))
            out.append((b"x-hotpath-fallbacks", ", ".join(self.fallbacks).encode()))
        return out


def is_context_error(exc: BaseException) -> bool:
    """An upstream's "the prompt does not fit the model's window" error."""
    if not isinstance(exc, UpstreamStatusError) or exc.status not in (400, 413):
        return False
    try:
        body = orjson.loads(exc.body)
    except orjson.JSONDecodeError:
        return False
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return False
    if error.get("code") == "context_length_exceeded":
        return True
    message = str(error.get("message", "")).lower()
    return "context length" in message or "prompt is too long" in message


def usage_tokens(usage: object) -> int | None:
    """The tokens an answer's ``usage`` reports (prompt and completion)."""
    if not isinstance(usage, dict):
        return None
    total = usage.get("total_tokens")
    if isinstance(total, int):
        return total
    parts = [usage.get("prompt_tokens"), usage.get("completion_tokens")]
    return sum(p for p in parts if isinstance(p, int)) if any(parts) else None
