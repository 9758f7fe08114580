"""One place that turns an upstream's config into its provider client, by kind."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hotpath._errors import ConfigError
from hotpath.providers._base import Provider

if TYPE_CHECKING:
    from hotpath.gateway._config import UpstreamConfig

__all__ = ["build_provider"]


def build_provider(config: UpstreamConfig) -> Provider:
    """The client for ``config.kind`` (``openai`` or ``anthropic``)."""
    from hotpath.providers._anthropic_provider import AnthropicProvider
    from hotpath.providers._openai import OpenAIProvider

    kinds: dict[str, type[OpenAIProvider] | type[AnthropicProvider]] = {
        "openai": OpenAIProvider,
        "anthropic": AnthropicProvider,
    }
    cls = kinds.get(config.kind)
    if cls is None:
        raise ConfigError(f"upstreams.{config.name}.kind {config.kind!r} has no provider")
    return cls(
        config.name,
        config.base_url,
        api_key=config.resolved_api_key(),
        headers=dict(config.headers),
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        first_token_timeout=config.first_token_timeout,
        max_connections=config.max_connections,
    )
    raise ConfigError(f"upstreams.{config.name}.kind {config.kind!r} has no provider")
