"""The ``[cost]`` and ``[admin]`` sections, and a model's ``select`` table, of
the gateway's TOML config."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from hotpath._errors import ConfigError
from hotpath.cost._budget import BudgetRule
from hotpath.cost._select import Weights
from hotpath.gateway._cost_config import AdminConfig, CostConfig, SelectConfig

__all__ = ["admin_from_document", "cost_from_document", "select_from_document"]

_COST = {
    "enabled",
    "store",
    "flush_interval",
    "retention_days",
    "prices",
    "budgets",
    "budget_store",
    "on_redis_error",
    "settle_after",
    "alert_webhook",
}
_BUDGET = {"scope", "match", "limit_usd", "period", "alert_at", "downgrade_at", "downgrade_to"}
_ADMIN = {"key_sha256", "key_env", "keys_store"}
_SELECT = {
    "candidates",
    "weights",
    "min_quality",
    "long_prompt_tokens",
    "long_prompt_model",
    "expected_completion_tokens",
}
_WEIGHTS = {"cost", "quality", "speed"}


def _checked(table: object, where: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table, got {table!r}")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"unknown key {where}.{unknown[0]} (known: {sorted(allowed)})")
    return table


def _build(cls: Any, where: str, values: Mapping[str, Any]) -> Any:
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


_RULE_PATH = re.compile(r"budgets\[[^\]]*\]")


def cost_from_document(doc: object) -> CostConfig:
    values = dict(_checked(doc, "cost", _COST))
    budgets = values.pop("budgets", [])
    if not isinstance(budgets, list):
        raise ConfigError(
            f"cost.budgets must be an array of tables ([[cost.budgets]]), got {budgets!r}"
        )
    rules = []
    for i, entry in enumerate(budgets):
        where = f"cost.budgets[{i}]"
        table = _checked(entry, where, _BUDGET)
        for required, what in (
            ("scope", "one of 'global', 'key', 'tenant', 'model'"),
            ("limit_usd", "USD per period"),
        ):
            if required not in table:
                raise ConfigError(f"{where} needs {required} ({what})")
        try:
            rule: BudgetRule = _build(BudgetRule, where, table)
        except ConfigError as exc:
            # The rule names itself budgets[scope:match]; the file knows its index.
            raise ConfigError(_RULE_PATH.sub(f"cost.budgets[{i}]", str(exc), count=1)) from None
        rules.append(rule)
    config: CostConfig = _build(CostConfig, "cost", {**values, "budgets": tuple(rules)})
    return config


def admin_from_document(doc: object) -> AdminConfig:
    config: AdminConfig = _build(AdminConfig, "admin", _checked(doc, "admin", _ADMIN))
    return config


def select_from_document(doc: object, where: str) -> SelectConfig:
    values = dict(_checked(doc, where, _SELECT))
    if "candidates" not in values:
        raise ConfigError(f"{where} needs candidates (a list of model names)")
    candidates = values["candidates"]
    if isinstance(candidates, list):
        values["candidates"] = tuple(candidates)
    if "weights" in values:
        weights_where = f"{where}.weights"
        table = _checked(values["weights"], weights_where, _WEIGHTS)
        try:
            values["weights"] = _build(Weights, weights_where, table)
        except ConfigError as exc:
            # Weights names itself "weights"; here it has a path.
            raise ConfigError(f"{where}.{exc}") from None
    try:
        config: SelectConfig = _build(SelectConfig, where, values)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("models[].select", where)) from None
    return config
