"""Token counting with ``bpe_openai``, behind a small typed wrapper.

``bpe_openai`` ships no type information, so everything it returns is narrowed
here. Encoders are cached per model name (bounded) and per encoding name.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, Protocol

import orjson

__all__ = ["Encoder", "count_anthropic_prompt", "count_chat_prompt", "encoder_for", "warm_up"]

FALLBACK_ENCODING = "o200k_base"
_MAX_CACHED_MODELS = 1024


class _Encoding(Protocol):
    def encode_ordinary(self, text: str) -> list[int]: ...
    def decode_single_token_bytes(self, token: int) -> bytes: ...


_CACHED_TEXT = 1024  # texts up to this length have their counts memoized...
_CACHE_ENTRIES = 8192  # ...in a table this big per encoder (emptied when full)


class Encoder:
    """One tokenizer: counts tokens and splits text into per-token pieces."""

    __slots__ = ("_counts", "_encoding", "name")

    def __init__(self, name: str, encoding: _Encoding) -> None:
        self.name = name
        self._encoding = encoding
        # Prompts repeat (system prompts, roles, benchmark traffic): memoize.
        self._counts: dict[str, int] = {}

    def count(self, text: str) -> int:
        """Number of tokens in *text* (special-token text counts as plain text)."""
        counts = self._counts
        cached = counts.get(text)
        if cached is not None:
            return cached
        n = len(self._encoding.encode_ordinary(text)) if text else 0
        if len(text) <= _CACHED_TEXT:
            if len(counts) >= _CACHE_ENTRIES:
                counts.clear()
            counts[text] = n
        return n

    def pieces(self, text: str) -> list[str]:
        """Split *text* into one string per token.

        A token that ends inside a multi-byte UTF-8 character is merged into the
        next piece, so for non-ASCII text there may be fewer pieces than tokens.
        """
        decode = self._encoding.decode_single_token_bytes
        out: list[str] = []
        pending = b""
        for token in self._encoding.encode_ordinary(text):
            pending += decode(token)
            try:
                out.append(pending.decode())
            except UnicodeDecodeError:
                continue
            pending = b""
        if pending:
            out.append(pending.decode(errors="replace"))
        return out


_by_encoding: dict[str, Encoder] = {}
_by_model: dict[str, Encoder] = {}


def _bpe() -> Any:
    return importlib.import_module("bpe_openai")


def _encoding(name: str) -> Encoder:
    encoder = _by_encoding.get(name)
    if encoder is None:
        encoder = _by_encoding[name] = Encoder(name, _bpe().get_encoding(name))
    return encoder


def encoder_for(model: str) -> Encoder:
    """The encoder of *model* as ``bpe_openai`` knows it, else ``o200k_base``."""
    encoder = _by_model.get(model)
    if encoder is not None:
        return encoder
    try:
        name = str(_bpe().encoding_name_for_model(model))
        encoder = _encoding(name)
    except Exception:  # noqa: BLE001 - any unknown model falls back
        encoder = _encoding(FALLBACK_ENCODING)
    if len(_by_model) < _MAX_CACHED_MODELS:
        _by_model[model] = encoder
    return encoder


def warm_up() -> None:
    """Load the common encoders now (importing and loading takes ~0.5 s), so
    that the first request is not slow."""
    encoder_for("gpt-4o")
    encoder_for("gpt-4")


def _content_tokens(encoder: Encoder, value: object) -> int:
    if isinstance(value, str):
        return encoder.count(value)
    if isinstance(value, list):
        total = 0
        for part in value:
            if isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    total += encoder.count(text)
                else:
                    total += encoder.count(orjson.dumps(part).decode())
            elif isinstance(part, str):
                total += encoder.count(part)
        return total
    if value is None:
        return 0
    return encoder.count(orjson.dumps(value).decode())


def count_chat_prompt(encoder: Encoder, messages: Sequence[Any], tools: object = None) -> int:
    """OpenAI's chat prompt accounting.

    3 tokens per message, plus the tokens of every string field (role, content,
    name, tool_call_id ...), plus 1 for a ``name``; list content counts the text
    of its text parts and the JSON of other parts (images are not priced like
    OpenAI does); other values (``tool_calls``) count the tokens of their JSON.
    3 more tokens prime the reply. Tools, when given, add the tokens of their
    compact JSON (an approximation: OpenAI renders tools differently).
    """
    total = 3
    for message in messages:
        total += 3
        if not isinstance(message, dict):
            continue
        for key, value in message.items():
            if key == "content" or isinstance(value, str):
                total += _content_tokens(encoder, value)
            elif value is not None:
                total += encoder.count(orjson.dumps(value).decode())
            if key == "name":
                total += 1
    if tools:
        total += encoder.count(orjson.dumps(tools).decode())
    return total


def count_anthropic_prompt(
    encoder: Encoder, system: object, messages: Sequence[Any], tools: object = None
) -> int:
    """An approximation of Anthropic's input tokens: text of the system prompt
    and of every message (text blocks; other blocks as JSON), 3 per message,
    plus the tools' compact JSON, counted with the model's encoder
    (``o200k_base`` for Claude model names)."""
    total = _content_tokens(encoder, system)
    for message in messages:
        total += 3
        if isinstance(message, dict):
            total += _content_tokens(encoder, message.get("content"))
    if tools:
        total += encoder.count(orjson.dumps(tools).decode())
    return total
