"""The gateway's traffic-control configuration: rate-limit rules, retries,
adaptive concurrency and circuit breakers (the ``[traffic]`` section).

The policies themselves live in :mod:`hotpath.traffic`; these value objects say
which ones apply where, and :mod:`hotpath.gateway._traffic` builds them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from hotpath._errors import ConfigError, short_repr
from hotpath._options import check_count, check_non_negative, check_positive, check_text
from hotpath.traffic._breaker import BreakerConfig
from hotpath.traffic._concurrency import DEFAULT_PRIORITIES
from hotpath.traffic._retry import RetryPolicy

__all__ = [
    "ConcurrencyConfig",
    "LimitRule",
    "LimitScope",
    "TrafficConfig",
]

LimitScope = Literal["global", "key", "tenant", "model", "deployment"]
SCOPES: tuple[LimitScope, ...] = ("global", "key", "tenant", "model", "deployment")
ALGORITHMS = ("gradient2", "vegas", "aimd", "fixed", "off")


def _choice(value: object, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {list(choices)}, got {short_repr(value)}")
    return str(value)


@dataclass(frozen=True, kw_only=True)
class LimitRule:
    """A rate limit: ``rpm`` requests and/or ``tpm`` tokens per minute.

    ``scope`` says what is counted: every request together (``global``), each
    gateway key, tenant, public model, or upstream deployment (``upstream/model``).
    ``match`` names one of them, or ``*`` for each one separately. ``burst`` is
    how many requests may go at once from idle, ``token_burst`` how many tokens
    (default: a full minute's worth); in any minute at most the limit plus the
    burst go through.
    """

    scope: LimitScope
    match: str = "*"
    rpm: float | None = None
    tpm: float | None = None
    burst: float | None = None
    token_burst: float | None = None

    def __post_init__(self) -> None:
        _choice(self.scope, SCOPES, "traffic.limits[].scope")
        where = f"traffic.limits[{self.scope}:{self.match}]"
        check_text(self.match, f"{where}.match")
        if self.scope == "global" and self.match != "*":
            raise ConfigError(f"{where}.match must be '*' for the global scope")
        if self.rpm is None and self.tpm is None:
            raise ConfigError(f"{where} needs rpm or tpm")
        for name in ("rpm", "tpm", "burst", "token_burst"):
            value = getattr(self, name)
            if value is not None:
                check_positive(value, f"{where}.{name}")
        if self.burst is not None and self.rpm is None:
            raise ConfigError(f"{where}.burst applies to rpm, which is not set")
        if self.token_burst is not None and self.tpm is None:
            raise ConfigError(f"{where}.token_burst applies to tpm, which is not set")

    @property
    def label(self) -> str:
        return f"{self.scope}:{self.match}"


@dataclass(frozen=True, kw_only=True)
class ConcurrencyConfig:
    """Adaptive concurrency per upstream deployment.

    ``algorithm`` finds the concurrency the upstream can take (``gradient2``,
    ``vegas``, ``aimd``), holds it at ``initial`` (``fixed``) or is ``off``, the
    default: measured on a gateway whose own CPU was the bottleneck, a latency-based
    limit read the gateway's queueing as the upstream's and cut throughput by a
    fifth, so it is for deployments whose capacity is worth protecting (a vLLM
    server of your own), turned on where it has been measured.
    ``priorities`` are the classes a request may name in ``x-hotpath-priority``
    with their shares under pressure; ``max_queue`` bounds the requests waiting
    for a slot.
    """

    algorithm: str = "off"
    initial: int = 20
    max_limit: int = 1000
    max_queue: int = 1000
    priorities: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_PRIORITIES))
    default_priority: str = "standard"

    def __post_init__(self) -> None:
        _choice(self.algorithm, ALGORITHMS, "traffic.concurrency.algorithm")
        check_count(self.initial, "traffic.concurrency.initial")
        check_count(self.max_limit, "traffic.concurrency.max_limit")
        if self.max_limit < self.initial:
            raise ConfigError(
                f"traffic.concurrency.max_limit ({self.max_limit}) must be at least "
                f"initial ({self.initial})"
            )
        check_count(self.max_queue, "traffic.concurrency.max_queue", 0)
        if not isinstance(self.priorities, Mapping) or not self.priorities:
            raise ConfigError(
                "traffic.concurrency.priorities must map class names to weights, "
                f"got {short_repr(self.priorities)}"
            )
        for name, weight in self.priorities.items():
            check_text(name, "traffic.concurrency.priorities name")
            check_count(weight, f"traffic.concurrency.priorities.{name}")
        object.__setattr__(self, "priorities", MappingProxyType(dict(self.priorities)))
        if self.default_priority not in self.priorities:
            raise ConfigError(
                f"traffic.concurrency.default_priority must be one of "
                f"{sorted(self.priorities)}, got {short_repr(self.default_priority)}"
            )

    @property
    def enabled(self) -> bool:
        return self.algorithm != "off"


@dataclass(frozen=True, kw_only=True)
class TrafficConfig:
    """Traffic control for every request.

    ``limits`` are checked before the cache (every request counts against its
    ``rpm``; tokens are reserved as the prompt's count plus ``max_tokens``, or
    ``default_completion_tokens`` without one, and settled against the real
    ``usage``). A limited request gets 429, or with ``on_limit = "queue"`` waits
    up to ``max_wait`` seconds (a request may ask for less with
    ``x-hotpath-max-wait``). Limits and breaker states are shared through
    ``redis_url`` (default: the cache's Redis tier, if any; ``""`` keeps them in
    each process); ``on_redis_error`` says whether a limit lets requests through
    (``open``) or refuses them (``closed``) while Redis is unreachable.
    ``retry_budget`` caps retries to that fraction of requests. ``breaker`` is
    ``None`` to turn circuit breakers off.
    """

    limits: tuple[LimitRule, ...] = ()
    on_limit: Literal["reject", "queue"] = "reject"
    max_wait: float = 10.0
    redis_url: str | None = None
    on_redis_error: Literal["open", "closed"] = "open"
    default_completion_tokens: int = 256
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    retry_budget: float = 0.2
    concurrency: ConcurrencyConfig = field(default_factory=ConcurrencyConfig)
    breaker: BreakerConfig | None = field(default_factory=BreakerConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.limits, tuple) or not all(
            isinstance(r, LimitRule) for r in self.limits
        ):
            raise ConfigError(f"traffic.limits must be limit rules, got {short_repr(self.limits)}")
        labels = [r.label for r in self.limits]
        if len(set(labels)) != len(labels):
            raise ConfigError(
                f"traffic.limits has two rules for the same scope and match: {labels}"
            )
        _choice(self.on_limit, ("reject", "queue"), "traffic.on_limit")
        check_non_negative(self.max_wait, "traffic.max_wait")
        if self.redis_url is not None and not isinstance(self.redis_url, str):
            raise ConfigError(
                f"traffic.redis_url must be a Redis URL or '', got {short_repr(self.redis_url)}"
            )
        _choice(self.on_redis_error, ("open", "closed"), "traffic.on_redis_error")
        check_count(self.default_completion_tokens, "traffic.default_completion_tokens", 0)
        _check_type(self.retry, RetryPolicy, "traffic.retry")
        check_non_negative(self.retry_budget, "traffic.retry.budget")
        _check_type(self.concurrency, ConcurrencyConfig, "traffic.concurrency")
        if self.breaker is not None:
            _check_type(self.breaker, BreakerConfig, "traffic.breaker")


def _check_type(value: object, cls: type, name: str) -> None:
    if not isinstance(value, cls):
        raise ConfigError(f"{name} must be a {cls.__name__}, got {short_repr(value)}")
