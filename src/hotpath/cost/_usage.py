"""What one call used: prompt, completion and cached tokens, read from a
provider's ``usage`` object (or counted locally when it gives none)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Usage"]


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one call. ``cached_tokens`` is the part of ``prompt_tokens`` the
    provider served from its prompt cache (billed at the cached-input price);
    ``estimated`` says the counts were made here with ``bpe-openai`` because the
    upstream reported none (e.g. a stream without ``include_usage``)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    estimated: bool = False

    def __post_init__(self) -> None:
        for name in ("prompt_tokens", "completion_tokens", "cached_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Usage.{name} must be an int >= 0, got {value!r}")
        if self.cached_tokens > self.prompt_tokens:
            raise ValueError(
                f"Usage.cached_tokens ({self.cached_tokens}) cannot exceed "
                f"prompt_tokens ({self.prompt_tokens})"
            )

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_openai(cls, usage: Any) -> Usage | None:
        """The usage of an OpenAI-style ``usage`` object (chat or embeddings), or
        ``None`` when it is missing or unreadable. Cached tokens come from
        ``prompt_tokens_details.cached_tokens`` (OpenAI) or
        ``cache_read_input_tokens`` (Anthropic's name, kept by some proxies)."""
        if not isinstance(usage, dict):
            return None
        prompt = _count(usage.get("prompt_tokens"))
        if prompt is None:
            prompt = _count(usage.get("input_tokens"))
        completion = _count(usage.get("completion_tokens"))
        if completion is None:
            completion = _count(usage.get("output_tokens"))
        if prompt is None and completion is None:
            total = _count(usage.get("total_tokens"))
            if total is None:
                return None
            prompt = total
        prompt = prompt or 0
        completion = completion or 0
        cached = 0
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict):
            cached = _count(details.get("cached_tokens")) or 0
        if not cached:
            cached = _count(usage.get("cache_read_input_tokens")) or 0
        return cls(prompt, completion, min(cached, prompt))


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value
