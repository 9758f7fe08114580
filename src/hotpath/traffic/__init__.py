"""Traffic control: rate limits, adaptive concurrency, circuit breakers, retries,
and routing over several deployments of a model.

Each policy is a plain state machine fed an injectable clock
(:class:`hotpath.ManualClock` in tests); the gateway composes them per request
(see docs/traffic.md).
"""

from hotpath._errors import CircuitOpenError, OverloadedError, RateLimitedError, TrafficError
from hotpath.traffic._breaker import (
    BreakerConfig,
    BreakerListener,
    BreakerState,
    BreakerStats,
    CircuitBreaker,
)
from hotpath.traffic._breaker_redis import BreakerSyncStats, RedisBreakerSync
from hotpath.traffic._concurrency import (
    DEFAULT_PRIORITIES,
    ConcurrencyLimiter,
    ConcurrencyStats,
    Permit,
    Ticket,
)
from hotpath.traffic._gcra import Decision, Limit, LocalRateLimiter, Rate, RateLimiterStats
from hotpath.traffic._limit_algorithms import (
    AIMDLimit,
    FixedLimit,
    Gradient2Limit,
    LimitAlgorithm,
    VegasLimit,
    algorithm_from_name,
)
from hotpath.traffic._provider_limits import ProviderLimits, ProviderLimitStats
from hotpath.traffic._rate_redis import RedisRateLimiter
from hotpath.traffic._retry import (
    RetryPolicy,
    RetryState,
    is_retryable,
    retry,
    retry_after_of,
    retrying,
)
from hotpath.traffic._retry_budget import RetryBudget, RetryBudgetStats
from hotpath.traffic._router import Deployment, DeploymentLoad, Router, RoutingStrategy

__all__ = [  # noqa: RUF022 - plain sorted(), as tests/test_public_api.py checks
    "AIMDLimit",
    "BreakerConfig",
    "BreakerListener",
    "BreakerState",
    "BreakerStats",
    "BreakerSyncStats",
    "CircuitBreaker",
    "CircuitOpenError",
    "ConcurrencyLimiter",
    "ConcurrencyStats",
    "DEFAULT_PRIORITIES",
    "Decision",
    "Deployment",
    "DeploymentLoad",
    "FixedLimit",
    "Gradient2Limit",
    "Limit",
    "LimitAlgorithm",
    "LocalRateLimiter",
    "OverloadedError",
    "Permit",
    "ProviderLimitStats",
    "ProviderLimits",
    "Rate",
    "RateLimitedError",
    "RateLimiterStats",
    "RedisBreakerSync",
    "RedisRateLimiter",
    "RetryBudget",
    "RetryBudgetStats",
    "RetryPolicy",
    "RetryState",
    "Router",
    "RoutingStrategy",
    "Ticket",
    "TrafficError",
    "VegasLimit",
    "algorithm_from_name",
    "is_retryable",
    "retry",
    "retry_after_of",
    "retrying",
]
