"""hotpath: make LLM agents fast and cheap.

The public API is re-exported here; implementation lives in private modules.
"""

from hotpath._clock import Clock, ManualClock, SystemClock
from hotpath._errors import (
    CacheError,
    CodecError,
    ConfigError,
    HotpathError,
    InvalidKeyError,
    InvalidTTLError,
    KeyBuildError,
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

__version__ = "0.1.0"

__all__ = [
    "CacheError",
    "CacheEvent",
    "CacheStats",
    "CachedFunction",
    "Clock",
    "Codec",
    "CodecError",
    "ConfigError",
    "HotpathError",
    "InvalidKeyError",
    "InvalidTTLError",
    "KeyBuildError",
    "LatencyStats",
    "ManualClock",
    "MemoryTier",
    "Record",
    "RedisTier",
    "SQLiteTier",
    "SystemClock",
    "Tier",
    "TierStats",
    "TieredCache",
    "cached",
    "fingerprint",
    "tier_from_url",
]
