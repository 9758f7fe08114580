"""The OpenAI-compatible gateway: an ASGI app, its config and its server."""

from hotpath.gateway._app import Gateway
from hotpath.gateway._config import (
    CacheConfig,
    GatewayConfig,
    GatewayKey,
    ModelRoute,
    ModelTarget,
    UpstreamConfig,
    hash_key,
)
from hotpath.gateway._config_load import load_config
from hotpath.gateway._cost_config import AdminConfig, CostConfig, SelectConfig
from hotpath.gateway._traffic_config import ConcurrencyConfig, LimitRule, TrafficConfig

__all__ = [
    "AdminConfig",
    "CacheConfig",
    "ConcurrencyConfig",
    "CostConfig",
    "Gateway",
    "GatewayConfig",
    "GatewayKey",
    "LimitRule",
    "ModelRoute",
    "ModelTarget",
    "SelectConfig",
    "TrafficConfig",
    "UpstreamConfig",
    "hash_key",
    "load_config",
]
