"""The gateway's cost settings: usage accounting, prices, budgets, alerts, the
admin API, and model selection routes."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from hotpath._errors import ConfigError
from hotpath._options import (
    check_bool,
    check_count,
    check_http_url,
    check_non_negative,
    check_positive,
    check_text,
)
from hotpath.cache._redis_url import redact
from hotpath.cost._budget import BudgetRule
from hotpath.cost._select import Weights

__all__ = ["AdminConfig", "CostConfig", "SelectConfig"]

_STORE_SCHEMES = ("memory://", "sqlite://", "redis://", "rediss://", "unix://")


def _check_store(value: object, name: str, schemes: tuple[str, ...] = _STORE_SCHEMES) -> None:
    if value is None:
        return
    shown = redact(value) if isinstance(value, str) else value
    kinds = ", ".join(s.replace("sqlite://", "sqlite:///") for s in schemes)
    if not isinstance(value, str) or not value.startswith(schemes):
        raise ConfigError(f"{name} must be a {kinds} URL, got {shown!r}")
    if value.startswith("sqlite://") and not value.startswith("sqlite:///"):
        raise ConfigError(
            f"{name} must be sqlite:///relative/path.db or sqlite:////absolute/path.db "
            f"(three slashes, no host), got {shown!r}"
        )


@dataclass(frozen=True, kw_only=True)
class CostConfig:
    """Usage accounting and budgets.

    ``store`` keeps usage by key, tenant, model, deployment and day (default: the
    Redis of the cache or traffic settings if any, else
    ``sqlite:///.hotpath/usage.db``). ``prices`` overrides or extends the shipped
    price table (USD per million tokens). ``budgets`` are enforced on every
    request; their counters live in ``budget_store`` (default: that same Redis,
    else this process, seeded from the usage store at start).
    ``alert_webhook`` receives a JSON POST for each budget alert, downgrade and
    exhaustion.
    """

    enabled: bool = True
    store: str | None = None
    flush_interval: float = 1.0
    retention_days: int = 400
    prices: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    budgets: tuple[BudgetRule, ...] = ()
    budget_store: str | None = None
    on_redis_error: Literal["open", "closed"] = "open"
    settle_after: float = 900.0
    alert_webhook: str | None = None

    def __post_init__(self) -> None:
        check_bool(self.enabled, "cost.enabled")
        _check_store(self.store, "cost.store")
        _check_store(self.budget_store, "cost.budget_store")
        check_positive(self.flush_interval, "cost.flush_interval")
        check_count(self.retention_days, "cost.retention_days")
        check_positive(self.settle_after, "cost.settle_after")
        if self.on_redis_error not in ("open", "closed"):
            raise ConfigError(
                f"cost.on_redis_error must be 'open' or 'closed', got {self.on_redis_error!r}"
            )
        if self.alert_webhook is not None:
            check_http_url(self.alert_webhook, "cost.alert_webhook")
        if not isinstance(self.budgets, tuple) or not all(
            isinstance(b, BudgetRule) for b in self.budgets
        ):
            raise ConfigError(f"cost.budgets must be a list of budgets, got {self.budgets!r}")
        if not isinstance(self.prices, Mapping):
            raise ConfigError(f"cost.prices must be a table of models, got {self.prices!r}")
        from hotpath.cost._prices import PriceTable

        PriceTable.default().with_overrides(self.prices, where="cost.prices")  # validates
        object.__setattr__(self, "prices", MappingProxyType(dict(self.prices)))


@dataclass(frozen=True, kw_only=True)
class AdminConfig:
    """The admin API (``/admin/...``): on when an admin key is set, as its
    SHA-256 (``key_sha256``) or in the environment variable ``key_env``. Keys
    made through it are kept in ``keys_store`` (default: the Redis of the cache
    or traffic settings if any, else ``sqlite:///.hotpath/keys.db``)."""

    key_sha256: str | None = field(default=None, repr=False)
    key_env: str | None = None
    keys_store: str | None = None

    def __post_init__(self) -> None:
        digest = self.key_sha256
        if digest is not None and (
            not isinstance(digest, str) or len(digest) != 64 or digest.strip("0123456789abcdef")
        ):
            raise ConfigError(
                "admin.key_sha256 must be 64 lowercase hex digits "
                f"(`hotpath hash-key` prints it), got {digest!r}"
            )
        if self.key_env is not None:
            check_text(self.key_env, "admin.key_env")
        _check_store(
            self.keys_store, "admin.keys_store", ("sqlite://", "redis://", "rediss://", "unix://")
        )

    def digest(self) -> str | None:
        """The admin key's SHA-256, from ``key_sha256`` or ``$key_env``."""
        if self.key_sha256 is not None:
            return self.key_sha256
        if self.key_env is not None:
            from hotpath.gateway._config import hash_key

            value = os.environ.get(self.key_env)
            return hash_key(value) if value else None
        return None

    @property
    def enabled(self) -> bool:
        return self.key_sha256 is not None or self.key_env is not None


@dataclass(frozen=True, kw_only=True)
class SelectConfig:
    """A route that picks one of ``candidates`` (public model names, each with a
    ``quality``) per request: by score on cost, quality and speed with
    ``weights``; a prompt over ``long_prompt_tokens`` goes to
    ``long_prompt_model``; ``x-hotpath-tier: cheap`` takes the cheapest candidate
    of quality ``min_quality`` or better."""

    candidates: tuple[str, ...]
    weights: Weights = field(default_factory=Weights)
    min_quality: float = 0.0
    long_prompt_tokens: int | None = None
    long_prompt_model: str | None = None
    expected_completion_tokens: int = 256

    def __post_init__(self) -> None:
        if (
            not isinstance(self.candidates, tuple)
            or not self.candidates
            or not all(isinstance(c, str) and c for c in self.candidates)
        ):
            shown = list(self.candidates) if isinstance(self.candidates, tuple) else self.candidates
            raise ConfigError(
                f"models[].select.candidates must be a non-empty list of model names, got {shown!r}"
            )
        if not isinstance(self.weights, Weights):
            raise ConfigError(f"models[].select.weights must be a table, got {self.weights!r}")
        quality = check_non_negative(self.min_quality, "models[].select.min_quality")
        if quality > 1:
            raise ConfigError(
                f"models[].select.min_quality must be a number in [0, 1], got {self.min_quality!r}"
            )
        if self.long_prompt_tokens is not None:
            check_count(self.long_prompt_tokens, "models[].select.long_prompt_tokens")
        if (self.long_prompt_tokens is None) != (self.long_prompt_model is None):
            raise ConfigError(
                "models[].select.long_prompt_tokens and long_prompt_model go together, got "
                f"{self.long_prompt_tokens!r} and {self.long_prompt_model!r}"
            )
        if self.long_prompt_model is not None and self.long_prompt_model not in self.candidates:
            raise ConfigError(
                f"models[].select.long_prompt_model must be one of the candidates "
                f"{list(self.candidates)!r}, got {self.long_prompt_model!r}"
            )
        check_count(self.expected_completion_tokens, "models[].select.expected_completion_tokens")
