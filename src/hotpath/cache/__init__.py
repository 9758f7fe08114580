"""The tiered cache: memory (L1) -> Redis (L2) -> SQLite (L3)."""

from hotpath._errors import HotpathError
from hotpath.cache._codec import Codec
from hotpath.cache._decorator import CachedFunction, cached
from hotpath.cache._keys import fingerprint
from hotpath.cache._memory import MemoryTier
from hotpath.cache._record import Record
from hotpath.cache._redis import RedisTier
from hotpath.cache._sqlite import SQLiteTier
from hotpath.cache._stats import CacheStats, LatencyStats, TierStats
from hotpath.cache._tier import Tier
from hotpath.cache._tiered import CacheEvent, TieredCache
from hotpath.cache._urls import tier_from_url

__all__ = [
    "CacheEvent",
    "CacheStats",
    "CachedFunction",
    "Codec",
    "HotpathError",
    "LatencyStats",
    "MemoryTier",
    "Record",
    "RedisTier",
    "SQLiteTier",
    "Tier",
    "TierStats",
    "TieredCache",
    "cached",
    "fingerprint",
    "tier_from_url",
]
