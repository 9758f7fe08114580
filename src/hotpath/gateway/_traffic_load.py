"""The ``[traffic]`` section of a config document -> :class:`TrafficConfig`.

::

    [traffic]
    on_limit = "queue"          # or "reject" (429 at once)
    max_wait = 10               # seconds a queued request may wait
    on_redis_error = "open"     # or "closed"

    [[traffic.limits]]
    scope = "tenant"            # global | key | tenant | model | deployment
    match = "*"                 # one name, or * for each separately
    rpm = 600
    tpm = 200000
    burst = 20

    [traffic.retry]             # attempts, base_delay, max_delay, max_elapsed,
    attempts = 3                # max_retry_after, budget (fraction of requests)

    [traffic.concurrency]       # algorithm, initial, max_limit, max_queue,
    algorithm = "gradient2"     # priorities, default_priority

    [traffic.breaker]           # enabled, window, min_calls, failure_rate,
    failure_rate = 0.5          # slow_call_rate, slow_call_duration, wait, half_open_calls
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from hotpath._errors import ConfigError
from hotpath._options import check_bool
from hotpath.gateway._traffic_config import ConcurrencyConfig, LimitRule, TrafficConfig
from hotpath.traffic._breaker import BreakerConfig
from hotpath.traffic._retry import RetryPolicy

__all__ = ["traffic_from_document"]

_TOP = {
    "limits",
    "on_limit",
    "max_wait",
    "redis_url",
    "on_redis_error",
    "default_completion_tokens",
    "retry",
    "concurrency",
    "breaker",
}
_LIMIT = {"scope", "match", "rpm", "tpm", "burst", "token_burst"}


def _fields(cls: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _checked(where: str, table: object, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table, got {table!r}")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"unknown key {where}.{unknown[0]} (known: {sorted(allowed)})")
    return dict(table)


def _make(cls: Any, where: str, values: Mapping[str, Any], prefix: str = "") -> Any:
    """``cls(**values)``; a library class's own messages name its fields as
    ``Class.field``: say ``where.field`` instead, the key the user wrote."""
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except ConfigError as exc:
        message = str(exc)
        if prefix:
            message = message.replace(prefix, f"{where}.")
        if where not in message:
            named = next((f for f in _fields(cls) if message.startswith(f"{f} ")), None)
            message = f"{where}.{message}" if named else f"{where}: {message}"
        raise ConfigError(message) from None


def traffic_from_document(doc: object) -> TrafficConfig:
    top = _checked("traffic", doc, _TOP)
    rules = top.pop("limits", [])
    if not isinstance(rules, list):
        raise ConfigError(
            f"traffic.limits must be an array of tables ([[traffic.limits]]), got {rules!r}"
        )
    limits = []
    for i, rule in enumerate(rules):
        where = f"traffic.limits[{i}]"
        table = _checked(where, rule, _LIMIT)
        if "scope" not in table:
            raise ConfigError(f"{where} needs scope (global, key, tenant, model or deployment)")
        limits.append(_make(LimitRule, where, table))
    values: dict[str, Any] = {"limits": tuple(limits)}
    for name in (
        "on_limit",
        "max_wait",
        "redis_url",
        "on_redis_error",
        "default_completion_tokens",
    ):
        if name in top:
            values[name] = top[name]
    if "retry" in top:
        retry = _checked("traffic.retry", top["retry"], _fields(RetryPolicy) | {"budget"})
        if "budget" in retry:
            values["retry_budget"] = retry.pop("budget")
        values["retry"] = _make(RetryPolicy, "traffic.retry", retry, "RetryPolicy.")
    if "concurrency" in top:
        table = _checked("traffic.concurrency", top["concurrency"], _fields(ConcurrencyConfig))
        values["concurrency"] = _make(ConcurrencyConfig, "traffic.concurrency", table)
    if "breaker" in top:
        table = _checked("traffic.breaker", top["breaker"], _fields(BreakerConfig) | {"enabled"})
        enabled = check_bool(table.pop("enabled", True), "traffic.breaker.enabled")
        values["breaker"] = (
            _make(BreakerConfig, "traffic.breaker", table, "BreakerConfig.") if enabled else None
        )
    config: TrafficConfig = _make(TrafficConfig, "traffic", values)
    return config
