"""The OpenAI-compatible gateway: an ASGI app, its config and its server."""

from hotpath.gateway._app import Gateway
from hotpath.gateway._config import (
    CacheConfig,
    GatewayConfig,
    GatewayKey,
    ModelRoute,
    UpstreamConfig,
    hash_key,
)
from hotpath.gateway._config_load import load_config

__all__ = [
    "CacheConfig",
    "Gateway",
    "GatewayConfig",
    "GatewayKey",
    "ModelRoute",
    "UpstreamConfig",
    "hash_key",
    "load_config",
]
