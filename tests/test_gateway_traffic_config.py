"""The ``[traffic]`` section and multi-deployment model routes of the config: every
key reaches its value object, and every bad value is reported by key and value."""

from __future__ import annotations

from typing import Any

import pytest

from hotpath import ConfigError
from hotpath.gateway import (
    ConcurrencyConfig,
    GatewayConfig,
    LimitRule,
    ModelRoute,
    ModelTarget,
    TrafficConfig,
    UpstreamConfig,
)
from hotpath.gateway._config_load import config_from_document
from hotpath.traffic._breaker import BreakerConfig
from hotpath.traffic._retry import RetryPolicy

UPSTREAMS = {
    "east": {"base_url": "http://east.example/v1"},
    "west": {"base_url": "http://west.example/v1"},
}


def load(traffic: Any = None, models: Any = None) -> GatewayConfig:
    doc: dict[str, Any] = {"upstreams": UPSTREAMS}
    if traffic is not None:
        doc["traffic"] = traffic
    if models is not None:
        doc["models"] = models
    return config_from_document(doc)


def test_defaults_retry_and_breaker_on_no_limits_no_concurrency_limit() -> None:
    traffic = load().traffic
    assert traffic == TrafficConfig()
    assert traffic.limits == ()
    assert traffic.retry == RetryPolicy()
    assert traffic.breaker == BreakerConfig()
    assert traffic.concurrency.algorithm == "off"
    assert not traffic.concurrency.enabled
    assert dict(traffic.concurrency.priorities) == {"interactive": 25, "standard": 10, "batch": 3}


def test_full_traffic_section_reaches_every_field() -> None:
    traffic = load(
        {
            "on_limit": "queue",
            "max_wait": 2.5,
            "redis_url": "",
            "on_redis_error": "closed",
            "default_completion_tokens": 512,
            "limits": [
                {"scope": "tenant", "match": "acme", "rpm": 600, "burst": 20},
                {"scope": "deployment", "tpm": 90000, "token_burst": 10000},
            ],
            "retry": {"attempts": 5, "base_delay": 0.1, "max_elapsed": 9, "budget": 0.1},
            "concurrency": {"algorithm": "vegas", "initial": 8, "max_limit": 64, "max_queue": 10},
            "breaker": {"window": 20, "min_calls": 5, "failure_rate": 0.25, "wait": 5},
        }
    ).traffic
    assert traffic.on_limit == "queue"
    assert traffic.max_wait == 2.5
    assert traffic.redis_url == ""
    assert traffic.on_redis_error == "closed"
    assert traffic.default_completion_tokens == 512
    assert traffic.limits == (
        LimitRule(scope="tenant", match="acme", rpm=600, burst=20),
        LimitRule(scope="deployment", tpm=90000, token_burst=10000),
    )
    assert traffic.retry == RetryPolicy(attempts=5, base_delay=0.1, max_elapsed=9)
    assert traffic.retry_budget == 0.1
    assert traffic.concurrency == ConcurrencyConfig(
        algorithm="vegas", initial=8, max_limit=64, max_queue=10
    )
    assert traffic.breaker == BreakerConfig(window=20, min_calls=5, failure_rate=0.25, wait=5)


def test_breaker_can_be_turned_off() -> None:
    assert load({"breaker": {"enabled": False}}).traffic.breaker is None


@pytest.mark.parametrize(
    ("traffic", "message"),
    [
        ({"bogus": 1}, "unknown key traffic.bogus"),
        ({"on_limit": "drop"}, "traffic.on_limit must be one of ['reject', 'queue'], got 'drop'"),
        ({"max_wait": -1}, "traffic.max_wait must be a number >= 0, got -1"),
        ({"on_redis_error": "maybe"}, "traffic.on_redis_error must be one of"),
        ({"limits": {"rpm": 1}}, "traffic.limits must be an array of tables"),
        ({"limits": [{"rpm": 1}]}, "traffic.limits[0] needs scope"),
        ({"limits": [{"scope": "planet", "rpm": 1}]}, "scope must be one of"),
        ({"limits": [{"scope": "key"}]}, "traffic.limits[key:*] needs rpm or tpm"),
        ({"limits": [{"scope": "key", "rpm": 0}]}, "traffic.limits[key:*].rpm must be a positive"),
        ({"limits": [{"scope": "key", "tpm": 5, "burst": 2}]}, "burst applies to rpm"),
        ({"limits": [{"scope": "key", "rpm": 5, "per": 2}]}, "unknown key traffic.limits[0].per"),
        (
            {"limits": [{"scope": "global", "match": "x", "rpm": 1}]},
            "match must be '*' for the global scope",
        ),
        (
            {"limits": [{"scope": "key", "rpm": 1}, {"scope": "key", "rpm": 2}]},
            "two rules for the same scope and match",
        ),
        ({"retry": {"tries": 2}}, "unknown key traffic.retry.tries"),
        ({"retry": {"attempts": 0}}, "traffic.retry.attempts"),
        ({"retry": {"budget": -0.5}}, "traffic.retry.budget must be a number >= 0, got -0.5"),
        ({"concurrency": {"algorithm": "magic"}}, "traffic.concurrency.algorithm must be one of"),
        ({"concurrency": {"initial": 50, "max_limit": 10}}, "must be at least initial"),
        (
            {"concurrency": {"default_priority": "vip"}},
            "traffic.concurrency.default_priority must be one of "
            "['batch', 'interactive', 'standard']",
        ),
        ({"breaker": {"failure_rate": 2}}, "traffic.breaker.failure_rate"),
        ({"breaker": {"enabled": "no"}}, "traffic.breaker.enabled must be true or false"),
    ],
)
def test_bad_traffic_values_name_the_key_and_value(traffic: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(traffic)
    assert message in str(caught.value)


def test_model_with_deployments_routing_and_fallbacks() -> None:
    config = load(
        models={
            "gpt-4o": {
                "deployments": [
                    {"upstream": "east", "model": "gpt-4o-2024", "weight": 3, "cost": 2.5},
                    "west",
                ],
                "routing": "weighted",
                "fallbacks": ["mini"],
                "context_window": 128000,
                "context_fallback": "mini",
            },
            "mini": "east",
        }
    )
    route = config.models["gpt-4o"]
    assert route.deployments == (
        ModelTarget(upstream="east", model="gpt-4o-2024", weight=3, cost=2.5),
        ModelTarget(upstream="west"),
    )
    assert route.upstream == "east"
    assert route.routing == "weighted"
    assert route.fallbacks == ("mini",)
    assert route.context_window == 128000
    assert route.context_fallback == "mini"


def test_short_model_forms_are_one_deployment() -> None:
    route = ModelRoute(upstream="east", model="m")
    assert route.deployments == (ModelTarget(upstream="east", model="m"),)
    assert route.routing == "latency"


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ({"m": {"deployments": []}}, "models.m.deployments must be a non-empty list"),
        ({"m": {"upstream": "east", "deployments": ["west"]}}, "needs either upstream"),
        ({"m": {"deployments": [{"upstream": "east", "speed": 1}]}}, "deployments[0].speed"),
        ({"m": {"deployments": [{"upstream": "east", "weight": 0}]}}, "weight must be a positive"),
        ({"m": {"deployments": [{"upstream": "east", "cost": -1}]}}, "cost must be a number >= 0"),
        ({"m": {"deployments": ["east", "east"]}}, "lists a deployment twice"),
        ({"m": {"deployments": ["north"]}}, "names upstream 'north', which is not configured"),
        ({"m": {"upstream": "east", "routing": "fastest"}}, "models.m.routing must be one of"),
        ({"m": {"upstream": "east", "fallbacks": ["nope"]}}, "falls back to 'nope'"),
        ({"m": {"upstream": "east", "context_fallback": "nope"}}, "falls back to 'nope'"),
        ({"m": {"upstream": "east", "context_window": 0}}, "models.m.context_window"),
        ({"m": {"upstream": "east", "colour": "red"}}, "unknown key models.m.colour"),
    ],
)
def test_bad_model_routes_name_the_key_and_value(models: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(models=models)
    assert message in str(caught.value)


def test_upstream_config_objects_validate_deployments() -> None:
    upstream = UpstreamConfig(name="east", base_url="http://east.example/v1")
    with pytest.raises(ConfigError) as caught:
        GatewayConfig(
            upstreams=(upstream,),
            models={"m": ModelRoute(deployments=(ModelTarget(upstream="west"),))},
        )
    assert "names upstream 'west'" in str(caught.value)


def test_traffic_toml_from_a_file(tmp_path: Any) -> None:
    from hotpath.gateway import load_config

    path = tmp_path / "hotpath.toml"
    path.write_text(
        """
[upstreams.east]
base_url = "http://east.example/v1"

[traffic]
on_limit = "queue"

[[traffic.limits]]
scope = "key"
rpm = 60

[traffic.concurrency]
priorities = { interactive = 5, batch = 1 }
default_priority = "batch"
""",
        encoding="utf-8",
    )
    traffic = load_config(path).traffic
    assert traffic.on_limit == "queue"
    assert traffic.limits == (LimitRule(scope="key", rpm=60),)
    assert dict(traffic.concurrency.priorities) == {"interactive": 5, "batch": 1}
