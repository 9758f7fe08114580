"""Tokens of a chat call whose upstream reported no ``usage`` (a stream from a
server that ignores ``stream_options.include_usage``, an older compatible
server): counted here with ``bpe-openai``, the way OpenAI bills them, and marked
``estimated``."""

from __future__ import annotations

from typing import Any

import orjson

from hotpath._tokens import count_chat_prompt, encoder_for
from hotpath.cost._usage import Usage
from hotpath.gateway._answers import Answer, assemble

__all__ = ["answer_usage", "counted_usage"]

_PER_TOOL_CALL = 3  # the call's framing, beyond its name and arguments


def answer_usage(answer: Answer) -> Usage | None:
    """The usage the upstream reported in ``answer``, if any."""
    if answer.tokens is not None:
        prompt, completion, cached = answer.tokens
        return Usage(prompt, completion, min(cached, prompt))
    if answer.kind == "sse":
        if answer.usage_index < 0:
            return None
        return _parsed_usage(orjson.loads(answer.chunks[answer.usage_index]))
    return _parsed_usage(orjson.loads(answer.body))


def _parsed_usage(payload: Any) -> Usage | None:
    return Usage.from_openai(payload.get("usage")) if isinstance(payload, dict) else None


def counted_usage(body: dict[str, Any], answer: Answer, model: str) -> Usage:
    """The usage of ``answer`` to ``body``, counted for ``model``'s encoding."""
    encoder = encoder_for(model)
    messages = body.get("messages")
    prompt = count_chat_prompt(
        encoder, messages if isinstance(messages, list) else [], body.get("tools")
    )
    if answer.kind == "sse":
        completion = assemble([orjson.loads(c) for c in answer.chunks])
    else:
        completion = orjson.loads(answer.body)
    produced = 0
    for choice in completion.get("choices") or () if isinstance(completion, dict) else ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            continue
        for field in ("content", "refusal"):
            text = message.get(field)
            if isinstance(text, str) and text:
                produced += encoder.count(text)
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                produced += _PER_TOOL_CALL
                for part in (function.get("name"), function.get("arguments")):
                    if isinstance(part, str) and part:
                        produced += encoder.count(part)
    return Usage(prompt, produced, 0, estimated=True)
