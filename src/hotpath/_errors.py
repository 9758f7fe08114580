"""The hotpath exception tree.

Every error hotpath raises on purpose derives from :class:`HotpathError`::

    HotpathError
    ├── ConfigError              a bad option, URL or setting (names the key and value)
    └── CacheError               anything the cache refuses
        ├── InvalidKeyError      a key that is not str / bytes (or not UTF-8 bytes)
        ├── InvalidTTLError      a TTL that is negative, zero, NaN or infinite
        ├── CodecError           a value the codec cannot encode
        └── KeyBuildError        @cached could not build a stable key from the arguments

Faults of a cache tier's backend (Redis down, a corrupt SQLite file) are *not*
raised to callers of the cache: the tier is marked unhealthy, the fault is
logged and counted in the stats, and the call carries on through the other tiers.
"""

from __future__ import annotations

__all__ = [
    "CacheError",
    "CodecError",
    "ConfigError",
    "HotpathError",
    "InvalidKeyError",
    "InvalidTTLError",
    "KeyBuildError",
]


class HotpathError(Exception):
    """Base class of every error hotpath raises on purpose."""


class ConfigError(HotpathError, ValueError):
    """A configuration value, option or URL is invalid."""


class CacheError(HotpathError):
    """The cache refused an operation."""


class InvalidKeyError(CacheError, TypeError):
    """A cache key is not a ``str`` or UTF-8 ``bytes``."""


class InvalidTTLError(CacheError, ValueError):
    """A TTL is not a positive, finite number of seconds."""


class CodecError(CacheError, TypeError):
    """The codec cannot encode a value."""


class KeyBuildError(CacheError, TypeError):
    """``@cached`` cannot build a stable key from a call's arguments."""
