"""Reading an OpenAI chat answer as a client does (the demo and ``hotpath bench``):
its token usage and whether a stream chunk carries content. Tolerant: a field
missing or of the wrong type reads as nothing."""

from __future__ import annotations

from hotpath.cost._usage import Usage

__all__ = ["has_content", "usage_of"]


def usage_of(data: object) -> tuple[int, int]:
    """``(prompt_tokens, completion_tokens)`` of an answer or a stream's last chunk,
    read as the gateway reads usage (:meth:`Usage.from_openai`)."""
    usage = Usage.from_openai(data.get("usage") if isinstance(data, dict) else None)
    return (0, 0) if usage is None else (usage.prompt_tokens, usage.completion_tokens)


def has_content(chunk: object) -> bool:
    """Whether a stream chunk carries text or a tool call (its first token)."""
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    for choice in choices if isinstance(choices, list) else ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict) and (delta.get("content") or delta.get("tool_calls")):
            return True
    return False
