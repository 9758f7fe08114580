"""Checks of option values: each raises :class:`~hotpath.ConfigError` naming the
option and showing the value received. Shared by the cache and the gateway."""

from __future__ import annotations

import math

from hotpath._errors import ConfigError

__all__ = ["check_count", "check_non_negative", "check_positive", "check_text"]


def check_positive(value: object, name: str) -> float:
    """``value`` as a finite float > 0 (seconds, sizes of steps ...)."""
    out = _finite(value, name, "a positive number")
    if out <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    return out


def check_non_negative(value: object, name: str) -> float:
    """``value`` as a finite float >= 0."""
    out = _finite(value, name, "a number >= 0")
    if out < 0:
        raise ConfigError(f"{name} must be a number >= 0, got {value!r}")
    return out


def check_count(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (bools are not counts)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _finite(value: object, name: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name} must be {what}, got {type(value).__name__} {value!r}")
    return float(value)


def check_text(value: object, name: str) -> str:
    """``value`` as a non-empty string."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
    return value
