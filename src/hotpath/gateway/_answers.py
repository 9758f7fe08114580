"""A chat answer as the gateway stores and replays it.

An answer is either a whole ``chat.completion`` body (``kind == "json"``) or the
list of ``chat.completion.chunk`` payloads of a stream (``kind == "sse"``), kept
exactly as the upstream sent them so that a replay is chunk for chunk the
original. Either kind answers either kind of request: :func:`assemble` merges
chunks into a completion, :func:`explode` turns a completion into chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["Answer", "assemble", "explode", "is_usage_chunk"]

_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Answer:
    """``body`` for ``json``; ``chunks`` (and the index of the usage-only chunk,
    or -1) for ``sse``. ``stored_at`` is the wall-clock time it was made. What it
    cost to make, kept so that a cache hit can say what it saved: ``tokens``
    (prompt, completion, cached; ``None`` if unknown) and ``latency`` (seconds the
    upstream took; ``None`` if unknown)."""

    kind: str
    stored_at: float
    body: bytes = b""
    chunks: tuple[bytes, ...] = ()
    usage_index: int = -1
    tokens: tuple[int, int, int] | None = None
    latency: float | None = None

    def to_value(self) -> dict[str, Any]:
        """The form written to the cache (msgpack-friendly)."""
        if self.kind == "json":
            value = {"v": _FORMAT, "k": "json", "t": self.stored_at, "b": self.body}
        else:
            value = {
                "v": _FORMAT,
                "k": "sse",
                "t": self.stored_at,
                "c": list(self.chunks),
                "u": self.usage_index,
            }
        if self.tokens is not None:
            value["n"] = list(self.tokens)
        if self.latency is not None:
            value["l"] = self.latency
        return value

    @classmethod
    def from_value(cls, value: Any) -> Answer | None:
        """The answer a cache value holds, or ``None`` if it is not one of ours."""
        if not isinstance(value, dict) or value.get("v") != _FORMAT:
            return None
        try:
            tokens = value.get("n")
            counts = (int(tokens[0]), int(tokens[1]), int(tokens[2])) if tokens else None
            latency = value.get("l")
            took = float(latency) if latency is not None else None
            if value["k"] == "json":
                return cls(
                    "json", float(value["t"]), body=bytes(value["b"]), tokens=counts, latency=took
                )
            if value["k"] == "sse":
                return cls(
                    "sse",
                    float(value["t"]),
                    chunks=tuple(bytes(c) for c in value["c"]),
                    usage_index=int(value["u"]),
                    tokens=counts,
                    latency=took,
                )
        except (KeyError, TypeError, ValueError, IndexError):
            return None
        return None

    def completion(self) -> bytes:
        """The answer as a ``chat.completion`` JSON body."""
        if self.kind == "json":
            return self.body
        return orjson.dumps(assemble([orjson.loads(c) for c in self.chunks]))

    def sse_body(self, include_usage: bool) -> bytes:
        """The answer as a whole SSE stream: its events, then ``data: [DONE]``."""
        events = [b"data: " + p + b"\n\n" for p in self.sse_payloads(include_usage)]
        return b"".join(events) + b"data: [DONE]\n\n"

    def sse_payloads(self, include_usage: bool) -> list[bytes]:
        """The answer as ``chat.completion.chunk`` payloads (without ``[DONE]``)."""
        if self.kind == "sse":
            if include_usage or self.usage_index < 0:
                return list(self.chunks)
            return [c for i, c in enumerate(self.chunks) if i != self.usage_index]
        chunks = explode(orjson.loads(self.body), include_usage=include_usage)
        return [orjson.dumps(c) for c in chunks]


def is_usage_chunk(chunk: dict[str, Any]) -> bool:
    return not chunk.get("choices") and chunk.get("usage") is not None


def assemble(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge a stream's chunks into the ``chat.completion`` it amounts to."""
    first = chunks[0] if chunks else {}
    choices: dict[int, dict[str, Any]] = {}
    usage = None
    for chunk in chunks:
        if chunk.get("usage") is not None:
            usage = chunk["usage"]
        for part in chunk.get("choices") or ():
            index = part.get("index", 0)
            choice = choices.setdefault(
                index,
                {
                    "index": index,
                    "message": {"role": "assistant", "content": None},
                    "logprobs": None,
                    "finish_reason": None,
                },
            )
            _merge_delta(choice, part)
    out: dict[str, Any] = {
        "id": first.get("id"),
        "object": "chat.completion",
        "created": first.get("created"),
        "model": first.get("model"),
        "choices": [choices[i] for i in sorted(choices)],
    }
    if "system_fingerprint" in first:
        out["system_fingerprint"] = first["system_fingerprint"]
    if usage is not None:
        out["usage"] = usage
    return out


def _merge_delta(choice: dict[str, Any], part: dict[str, Any]) -> None:
    message = choice["message"]
    delta = part.get("delta") or {}
    for name, value in delta.items():
        if value is None:
            continue
        if name == "tool_calls":
            calls = message.setdefault("tool_calls", [])
            for call in value:
                _merge_tool_call(calls, call)
        elif name in ("content", "refusal"):
            message[name] = (message.get(name) or "") + value
        elif name == "role":
            message["role"] = value
        else:
            message[name] = value
    logprobs = part.get("logprobs")
    if logprobs:
        merged = choice["logprobs"] or {}
        for field, entries in logprobs.items():
            if isinstance(entries, list):
                merged.setdefault(field, []).extend(entries)
        choice["logprobs"] = merged
    if part.get("finish_reason") is not None:
        choice["finish_reason"] = part["finish_reason"]


def _merge_tool_call(calls: list[dict[str, Any]], delta: dict[str, Any]) -> None:
    index = delta.get("index", len(calls))
    while len(calls) <= index:
        calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
    call = calls[index]
    if delta.get("id"):
        call["id"] = delta["id"]
    if delta.get("type"):
        call["type"] = delta["type"]
    function = delta.get("function") or {}
    if function.get("name"):
        call["function"]["name"] += function["name"]
    if function.get("arguments"):
        call["function"]["arguments"] += function["arguments"]


def explode(completion: dict[str, Any], *, include_usage: bool) -> list[dict[str, Any]]:
    """The chunks of a stream that amounts to ``completion``: per choice, one
    chunk with the role, one with the whole content / tool calls, one with the
    finish reason; then the usage chunk if asked for."""
    base = {
        "id": completion.get("id"),
        "object": "chat.completion.chunk",
        "created": completion.get("created"),
        "model": completion.get("model"),
        "system_fingerprint": completion.get("system_fingerprint"),
    }
    chunks: list[dict[str, Any]] = []
    for choice in completion.get("choices") or ():
        index = choice.get("index", 0)
        message = choice.get("message") or {}
        head = {"role": message.get("role", "assistant"), "content": ""}
        chunks.append({**base, "choices": [_part(index, head, None, None)]})
        delta: dict[str, Any] = {}
        if message.get("content"):
            delta["content"] = message["content"]
        if message.get("refusal"):
            delta["refusal"] = message["refusal"]
        if message.get("tool_calls"):
            delta["tool_calls"] = [
                {**call, "index": i} for i, call in enumerate(message["tool_calls"])
            ]
        if delta:
            chunks.append({**base, "choices": [_part(index, delta, choice.get("logprobs"), None)]})
        finish = choice.get("finish_reason")
        chunks.append({**base, "choices": [_part(index, {}, None, finish)]})
    if include_usage and completion.get("usage") is not None:
        chunks.append({**base, "choices": [], "usage": completion["usage"]})
    return chunks


def _part(index: int, delta: dict[str, Any], logprobs: Any, finish: str | None) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
