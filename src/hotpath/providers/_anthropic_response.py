"""An Anthropic Messages response as an OpenAI ``chat.completion``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from hotpath._errors import short_repr as show
from hotpath.providers._anthropic_errors import UpstreamProtocolError

__all__ = ["finish_reason", "messages_to_chat", "usage_to_openai"]

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    # A server-tool loop paused; the turn is over as far as this response goes.
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: object) -> str:
    """OpenAI's ``finish_reason`` for an Anthropic ``stop_reason``; unknown ones are ``stop``."""
    if isinstance(stop_reason, str):
        return _FINISH_REASONS.get(stop_reason, "stop")
    return "stop"


def usage_to_openai(usage: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI ``usage`` for Anthropic ``usage``; missing or null counts are 0.

    Anthropic's ``input_tokens`` excludes the tokens written to and read from the
    prompt cache, OpenAI's ``prompt_tokens`` includes them, so all three are added;
    the cache reads are also reported as ``prompt_tokens_details.cached_tokens``.
    """
    cache_read = usage.get("cache_read_input_tokens")
    prompt = (
        _count(usage, "input_tokens")
        + _count(usage, "cache_creation_input_tokens")
        + _count(usage, "cache_read_input_tokens")
    )
    completion = _count(usage, "output_tokens")
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cache_read is not None:
        out["prompt_tokens_details"] = {"cached_tokens": _count(usage, "cache_read_input_tokens")}
    return out


def _count(usage: Mapping[str, Any], key: str) -> int:
    value = usage.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def messages_to_chat(response: Mapping[str, Any], *, model: str, created: int) -> dict[str, Any]:
    """Translate a non-streaming Anthropic Messages response to an OpenAI chat completion.

    ``model`` is the public model name the client asked for, ``created`` the Unix
    time to report. The message ``content`` is the text blocks joined (``None``
    when the answer is only tool calls), each ``tool_use`` block becomes a tool call
    whose ``arguments`` are its input as compact JSON, and ``thinking``,
    ``redacted_thinking`` and server-tool blocks are dropped: OpenAI's chat format
    has no place for them.

    Raises :class:`UpstreamProtocolError` when ``response`` lacks the Messages
    response shape (no string ``id``, ``content`` not a list of blocks).
    """
    message_id = response.get("id")
    if not isinstance(message_id, str):
        raise UpstreamProtocolError(f"Anthropic response id must be a string: {show(message_id)}")
    blocks = response.get("content")
    if not isinstance(blocks, list):
        raise UpstreamProtocolError(f"Anthropic response content must be a list: {show(blocks)}")
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for i, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind == "text":
            texts.append(_field(block, "text", str, f"content[{i}]"))
        elif kind == "tool_use":
            tool_input = _field(block, "input", Mapping, f"content[{i}]")
            tool_calls.append(
                {
                    "id": _field(block, "id", str, f"content[{i}]"),
                    "type": "function",
                    "function": {
                        "name": _field(block, "name", str, f"content[{i}]"),
                        "arguments": orjson.dumps(tool_input).decode(),
                    },
                }
            )
        elif not isinstance(kind, str):
            raise UpstreamProtocolError(f"Anthropic content[{i}] is not a block: {show(block)}")
    message: dict[str, Any] = {
        "role": "assistant",
        # No text at all is "" (as OpenAI sends), unless the answer is tool calls.
        "content": "".join(texts) if texts or not tool_calls else None,
        "refusal": None,
        "annotations": [],
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    usage = response.get("usage")
    return {
        "id": f"chatcmpl-{message_id}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(response.get("stop_reason")),
            }
        ],
        "usage": usage_to_openai(usage if isinstance(usage, Mapping) else {}),
        "system_fingerprint": None,
    }


def _field(block: Mapping[str, Any], key: str, kind: type[Any], path: str) -> Any:
    value = block.get(key)
    if not isinstance(value, kind):
        raise UpstreamProtocolError(
            f"Anthropic {path}.{key} must be a {kind.__name__}, got {show(value)}"
        )
    return value
