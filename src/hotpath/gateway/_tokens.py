"""What a chat request is reserved against token limits before it is sent.

The prompt is counted exactly for OpenAI's encodings (``bpe-openai``: o200k for
the gpt-4o family and later, cl100k for gpt-4 / gpt-3.5; other names count with
o200k), the way OpenAI bills it (:func:`hotpath._tokens.count_chat_prompt`).
The completion is reserved at its ceiling: ``max_completion_tokens`` or
``max_tokens``, times ``n``; without either, ``default_completion_tokens``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from hotpath._tokens import count_chat_prompt, encoder_for

__all__ = ["TokenCounts", "count_request", "reserve_tokens"]


class TokenCounts(NamedTuple):
    """A chat request's ``prompt`` tokens, its ``completion`` ceiling (all
    choices), and what must fit the context window (the prompt and the request's
    own ``max_tokens``)."""

    prompt: int
    completion: int
    context: int


def reserve_tokens(body: dict[str, Any], model: str, default_completion: int) -> tuple[int, int]:
    """``(tokens to reserve, tokens that must fit the context window)`` for a
    validated chat request to ``model``."""
    counts = count_request(body, model, default_completion)
    return counts.prompt + counts.completion, counts.context


def count_request(body: dict[str, Any], model: str, default_completion: int) -> TokenCounts:
    """The :class:`TokenCounts` of a validated chat request to ``model``."""
    messages = body.get("messages")
    prompt = count_chat_prompt(
        encoder_for(model), messages if isinstance(messages, list) else [], body.get("tools")
    )
    asked = _count(body.get("max_completion_tokens"))
    if asked is None:
        asked = _count(body.get("max_tokens"))
    ceiling = default_completion if asked is None else asked
    n = _count(body.get("n"))
    choices = n if n else 1
    return TokenCounts(prompt, ceiling * choices, prompt + (asked or 0))


def _count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None
