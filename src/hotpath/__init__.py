"""hotpath: make LLM agents fast and cheap.

The public API is re-exported here; implementation lives in private modules.
"""

from typing import TYPE_CHECKING, Any

from hotpath._clock import Clock, ManualClock, SystemClock
from hotpath._errors import (
    BudgetExceededError,
    CacheError,
    CircuitOpenError,
    CodecError,
    ConfigError,
    HotpathError,
    InvalidKeyError,
    InvalidTTLError,
    KeyBuildError,
    OverloadedError,
    RateLimitedError,
    TrafficError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamStreamCutError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from hotpath.cache import (
    CachedFunction,
    CacheEvent,
    CacheStats,
    Codec,
    LatencyStats,
    MemoryTier,
    Record,
    RedisTier,
    SQLiteTier,
    Tier,
    TieredCache,
    TierStats,
    cached,
    fingerprint,
    tier_from_url,
)

if TYPE_CHECKING:
    from hotpath.gateway import (
        AdminConfig,
        CacheConfig,
        ConcurrencyConfig,
        CostConfig,
        Gateway,
        GatewayConfig,
        GatewayKey,
        LimitRule,
        ModelRoute,
        ModelTarget,
        SelectConfig,
        TrafficConfig,
        UpstreamConfig,
        hash_key,
        load_config,
    )

__version__ = "0.1.0"

# The gateway pulls in its HTTP stack; a library user who only caches should not
# pay for that import, so its names load on first use.
_GATEWAY = frozenset(
    {
        "AdminConfig",
        "CostConfig",
        "SelectConfig",
        "CacheConfig",
        "ConcurrencyConfig",
        "LimitRule",
        "ModelTarget",
        "TrafficConfig",
        "Gateway",
        "GatewayConfig",
        "GatewayKey",
        "ModelRoute",
        "UpstreamConfig",
        "hash_key",
        "load_config",
    }
)


def __getattr__(name: str) -> Any:
    if name in _GATEWAY:
        import hotpath.gateway

        return getattr(hotpath.gateway, name)
    raise AttributeError(f"module 'hotpath' has no attribute {name!r}")


__all__ = [
    "AdminConfig",
    "BudgetExceededError",
    "CacheConfig",
    "CacheError",
    "CacheEvent",
    "CacheStats",
    "CachedFunction",
    "CircuitOpenError",
    "Clock",
    "Codec",
    "CodecError",
    "ConcurrencyConfig",
    "ConfigError",
    "CostConfig",
    "Gateway",
    "GatewayConfig",
    "GatewayKey",
    "HotpathError",
    "InvalidKeyError",
    "InvalidTTLError",
    "KeyBuildError",
    "LatencyStats",
    "LimitRule",
    "ManualClock",
    "MemoryTier",
    "ModelRoute",
    "ModelTarget",
    "OverloadedError",
    "RateLimitedError",
    "Record",
    "RedisTier",
    "SQLiteTier",
    "SelectConfig",
    "SystemClock",
    "Tier",
    "TierStats",
    "TieredCache",
    "TrafficConfig",
    "TrafficError",
    "UpstreamConfig",
    "UpstreamError",
    "UpstreamStatusError",
    "UpstreamStreamCutError",
    "UpstreamTimeoutError",
    "UpstreamUnavailableError",
    "cached",
    "fingerprint",
    "hash_key",
    "load_config",
    "tier_from_url",
]
