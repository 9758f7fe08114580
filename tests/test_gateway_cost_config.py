"""The ``[cost]``, ``[[cost.budgets]]`` and ``[admin]`` sections and the models'
``quality`` and ``select`` of the gateway config: every key reaches its value
object, and every bad value is reported by key path and value."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from hotpath import ConfigError
from hotpath.cost import BudgetRule, Price, PriceTable, Weights
from hotpath.gateway import GatewayConfig, hash_key, load_config
from hotpath.gateway._config_load import config_from_document
from hotpath.gateway._cost_config import AdminConfig, CostConfig, SelectConfig

ADMIN_DIGEST = hash_key("sk-admin")

# Three models on one upstream: a and b have a quality, c has none.
MODELS = """
[upstreams.east]
base_url = "http://east.example/v1"

[models.a]
upstream = "east"
quality = 0.9

[models.b]
upstream = "east"
model = "b-2025"
quality = 0.4

[models.c]
upstream = "east"
"""

FULL = f"""{MODELS}
[models.auto]
select = {{ candidates = ["a", "b"], weights = {{ cost = 0.5, quality = 0.5, speed = 0 }}, \
min_quality = 0.5, long_prompt_tokens = 1000, long_prompt_model = "b" }}

[cost]
enabled = true
store = "sqlite:///var/hotpath/usage.db"
flush_interval = 2.5
retention_days = 90
budget_store = "redis://budgets:6379/2"
on_redis_error = "closed"
settle_after = 60
alert_webhook = "https://hooks.example/hotpath"

[cost.prices."my-model"]
input = 1.0
output = 2.0

[cost.prices."gpt-4o"]
output = 20.0

[[cost.budgets]]
scope = "tenant"
match = "acme"
limit_usd = 100
period = "week"
alert_at = 0.5
downgrade_at = 0.9
downgrade_to = "b"

[[cost.budgets]]
scope = "global"
limit_usd = 1000.5

[admin]
key_sha256 = "{ADMIN_DIGEST}"
key_env = "HP_TEST_ADMIN_KEY"
keys_store = "redis://keys:6379/3"
"""


def load(text: str) -> GatewayConfig:
    """The config of ``MODELS`` followed by ``text``."""
    return config_from_document(tomllib.loads(MODELS + text))


def error(text: str) -> str:
    """The message of the ConfigError that loading ``MODELS + text`` raises."""
    with pytest.raises(ConfigError) as caught:
        load(text)
    return str(caught.value)


# -- every key reaches its field -----------------------------------------------------------


def test_defaults_without_the_sections() -> None:
    config = load("")
    assert config.cost == CostConfig()
    assert config.cost.enabled
    assert config.cost.store is None
    assert config.cost.flush_interval == 1.0
    assert config.cost.retention_days == 400
    assert dict(config.cost.prices) == {}
    assert config.cost.budgets == ()
    assert config.cost.budget_store is None
    assert config.cost.on_redis_error == "open"
    assert config.cost.settle_after == 900.0
    assert config.cost.alert_webhook is None
    assert config.admin == AdminConfig()
    assert not config.admin.enabled
    assert config.models["a"].quality == 0.9
    assert config.models["c"].quality is None
    assert config.models["c"].select is None


def test_full_file_reaches_every_field(tmp_path: Path) -> None:
    path = tmp_path / "hotpath.toml"
    path.write_text(FULL)
    config = load_config(path)
    cost = config.cost
    assert cost.enabled
    assert cost.store == "sqlite:///var/hotpath/usage.db"
    assert cost.flush_interval == 2.5
    assert cost.retention_days == 90
    assert cost.budget_store == "redis://budgets:6379/2"
    assert cost.on_redis_error == "closed"
    assert cost.settle_after == 60
    assert cost.alert_webhook == "https://hooks.example/hotpath"
    assert dict(cost.prices) == {
        "my-model": {"input": 1.0, "output": 2.0},
        "gpt-4o": {"output": 20.0},
    }
    assert cost.budgets == (
        BudgetRule(
            scope="tenant",
            match="acme",
            limit_usd=100,
            period="week",
            alert_at=0.5,
            downgrade_at=0.9,
            downgrade_to="b",
        ),
        BudgetRule(scope="global", limit_usd=1000.5),
    )
    assert config.admin == AdminConfig(
        key_sha256=ADMIN_DIGEST, key_env="HP_TEST_ADMIN_KEY", keys_store="redis://keys:6379/3"
    )
    assert config.admin.enabled
    assert config.admin.digest() == ADMIN_DIGEST  # key_sha256 wins over key_env


def test_full_file_through_hotpath_config(tmp_path: Path) -> None:
    path = tmp_path / "hotpath.toml"
    path.write_text(FULL)
    assert load_config(env={"HOTPATH_CONFIG": str(path)}) == load_config(path)


def test_a_budget_takes_the_defaults() -> None:
    config = load('[[cost.budgets]]\nscope = "key"\nlimit_usd = 5\n')
    (rule,) = config.cost.budgets
    assert rule == BudgetRule(scope="key", limit_usd=5)
    assert rule.match == "*"
    assert rule.period == "month"
    assert rule.alert_at == 0.8
    assert rule.downgrade_at == 0.95
    assert rule.downgrade_to is None


def test_price_overrides_define_and_update_models() -> None:
    config = load(
        '[cost.prices."my-model"]\ninput = 1.0\noutput = 2.0\n'
        '[cost.prices."gpt-4o"]\noutput = 20.0\n'
        '[cost.prices."my-embedder"]\ninput = 0.05\nkind = "embedding"\n'
    )
    shipped = PriceTable.default()
    table = shipped.with_overrides(config.cost.prices)
    assert table.lookup("my-model") == Price(input=1.0, output=2.0)
    assert table.lookup("my-embedder") == Price(input=0.05, kind="embedding")
    updated, before = table.lookup("gpt-4o"), shipped.lookup("gpt-4o")
    assert updated is not None
    assert before is not None
    assert updated.output == 20.0
    assert updated.input == before.input  # a partial entry keeps the shipped input price


def test_budget_downgrade_to_any_model_under_a_catch_all_route() -> None:
    config = load(
        '[models."*"]\nupstream = "east"\n'
        '[[cost.budgets]]\nscope = "tenant"\nlimit_usd = 5\ndowngrade_to = "anything"\n'
    )
    assert config.cost.budgets[0].downgrade_to == "anything"


def test_admin_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load('[admin]\nkey_env = "HP_TEST_ADMIN_KEY"\n')
    assert config.admin.enabled
    monkeypatch.delenv("HP_TEST_ADMIN_KEY", raising=False)
    assert config.admin.digest() is None
    monkeypatch.setenv("HP_TEST_ADMIN_KEY", "sk-admin")
    assert config.admin.digest() == ADMIN_DIGEST


def test_select_route_reaches_every_field() -> None:
    config = config_from_document(tomllib.loads(FULL))
    route = config.models["auto"]
    assert route.select == SelectConfig(
        candidates=("a", "b"),
        weights=Weights(cost=0.5, quality=0.5, speed=0),
        min_quality=0.5,
        long_prompt_tokens=1000,
        long_prompt_model="b",
    )
    assert route.select.expected_completion_tokens == 256
    assert route.deployments == ()
    assert route.upstream == ""
    assert config.models["b"].quality == 0.4


def test_select_defaults() -> None:
    config = load('[models.auto]\nselect = { candidates = ["a", "b"] }\n')
    select = config.models["auto"].select
    assert select == SelectConfig(candidates=("a", "b"))
    assert select.weights == Weights()
    assert select.min_quality == 0.0
    assert select.long_prompt_tokens is None
    assert select.long_prompt_model is None


# -- bad input: the key path and the value -------------------------------------------------

_COST_KEYS = (
    "['alert_webhook', 'budget_store', 'budgets', 'enabled', 'flush_interval', "
    "'on_redis_error', 'prices', 'retention_days', 'settle_after', 'store']"
)
_BUDGET_KEYS = (
    "['alert_at', 'downgrade_at', 'downgrade_to', 'limit_usd', 'match', 'period', 'scope']"
)
_SELECT_KEYS = (
    "['candidates', 'expected_completion_tokens', 'long_prompt_model', "
    "'long_prompt_tokens', 'min_quality', 'weights']"
)
_ROUTE_KEYS = (
    "['context_fallback', 'context_window', 'deployments', 'fallbacks', 'model', "
    "'quality', 'routing', 'select', 'upstream']"
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[cost]\nbogus = 1", f"unknown key cost.bogus (known: {_COST_KEYS})"),
        (
            '[[cost.budgets]]\nscope = "tenant"\nlimit_usd = 5\nper = "day"',
            f"unknown key cost.budgets[0].per (known: {_BUDGET_KEYS})",
        ),
        (
            '[admin]\nkey = "sk-admin"',
            "unknown key admin.key (known: ['key_env', 'key_sha256', 'keys_store'])",
        ),
        (
            '[models.auto]\nselect = { candidates = ["a"], pick = 1 }',
            f"unknown key models.auto.select.pick (known: {_SELECT_KEYS})",
        ),
        (
            # unclear: the path is doubled (see the report)
            '[models.auto]\nselect = { candidates = ["a"], weights = { price = 1 } }',
            "unknown key models.auto.select.weights.price (known: ['cost', 'quality', 'speed'])",
        ),
        (
            '[models.d]\nupstream = "east"\nscore = 1',
            f"unknown key models.d.score (known: {_ROUTE_KEYS})",
        ),
        (
            '[cost.prices."m"]\ninput = 1.0\noutput = 2.0\nfoo = 1',
            'cost.prices."m".foo is not a price field (expected one of cached_input, '
            "context_window, input, kind, output, provider), got 1",
        ),
    ],
    ids=["cost", "budget", "admin", "select", "weights", "model", "price"],
)
def test_unknown_keys(text: str, message: str) -> None:
    assert error(text) == message


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"cost": 5}, "cost must be a table, got 5"),
        ({"admin": "on"}, "admin must be a table, got 'on'"),
        ({"cost": {"budgets": {"scope": "key"}}}, "cost.budgets must be an array of tables"),
        ({"cost": {"budgets": [5]}}, "cost.budgets[0] must be a table, got 5"),
        ({"cost": {"prices": 5}}, "cost.prices must be a table of models, got 5"),
        ({"cost": {"prices": {"m": 5}}}, 'cost.prices."m" must be a table of prices, got 5'),
    ],
)
def test_sections_of_the_wrong_type(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_document(doc)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('enabled = "yes"', "cost.enabled must be true or false, got 'yes'"),
        (
            'store = "postgres://db/usage"',
            "cost.store must be a memory://, sqlite:///, redis://, rediss://, unix:// URL, got 'postgres://db/usage'",
        ),
        (
            "store = 5",
            "cost.store must be a memory://, sqlite:///, redis://, rediss://, unix:// URL, got 5",
        ),
        (
            'store = "redis+cluster://h:7000"',
            "cost.store must be a memory://, sqlite:///, redis://, rediss://, unix:// URL, "
            "got 'redis+cluster://h:7000'",
        ),
        (
            'budget_store = "mysql://db"',
            "cost.budget_store must be a memory://, sqlite:///, redis://, rediss://, unix:// "
            "URL, got 'mysql://db'",
        ),
        ("flush_interval = 0", "cost.flush_interval must be a positive number, got 0"),
        ('flush_interval = "1s"', "cost.flush_interval must be a positive number, got str '1s'"),
        ("retention_days = 0", "cost.retention_days must be an int >= 1, got 0"),
        ("retention_days = 1.5", "cost.retention_days must be an int >= 1, got 1.5"),
        ("settle_after = -1", "cost.settle_after must be a positive number, got -1"),
        (
            'on_redis_error = "maybe"',
            "cost.on_redis_error must be 'open' or 'closed', got 'maybe'",
        ),
        (
            'alert_webhook = "ftp://hooks.example/x"',
            "cost.alert_webhook must be an http(s) URL, got 'ftp://hooks.example/x'",
        ),
        ('alert_webhook = "https://"', "cost.alert_webhook must be an http(s) URL, got 'https://'"),
        ('alert_webhook = ""', "cost.alert_webhook must be a non-empty string, got ''"),
    ],
)
def test_bad_cost_values(text: str, message: str) -> None:
    assert error(f"[cost]\n{text}\n") == message


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            "input = -1.0\noutput = 2.0",
            'cost.prices."m".input must be a number >= 0, got -1.0',
        ),
        (
            'input = "cheap"\noutput = 2.0',
            "cost.prices.\"m\".input must be a number >= 0, got str 'cheap'",
        ),
        (
            "input = 1.0\noutput = -2",
            'cost.prices."m".output must be a number >= 0, got -2',
        ),
        (
            "input = 1.0",
            'cost.prices."m".output is missing: a chat model needs an output price '
            "(USD per million completion tokens)",
        ),
        (
            "output = 1.0",
            'cost.prices."m".input is missing: a model not in the price table needs an input '
            "price (USD per million prompt tokens)",
        ),
        (
            "input = 1.0\noutput = 2.0\ncached_input = 3.0",
            'cost.prices."m".cached_input must be <= input (1.0), got 3.0',
        ),
        (
            'input = 1.0\nkind = "audio"',
            "cost.prices.\"m\".kind must be 'chat' or 'embedding', got 'audio'",
        ),
        (
            "input = 1.0\noutput = 1.0\ncontext_window = 0",
            'cost.prices."m".context_window must be an int >= 1, got 0',
        ),
    ],
)
def test_bad_prices(entry: str, message: str) -> None:
    assert error(f'[cost.prices."m"]\n{entry}\n') == message


def test_bad_price_of_a_shipped_model() -> None:
    assert error('[cost.prices."gpt-4o"]\noutput = "x"\n') == (
        "cost.prices.\"gpt-4o\".output must be a number >= 0, got str 'x'"
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        # unclear: these name budgets[scope:match] without "cost." (see the report)
        (
            'scope = "tenant"\nmatch = "acme"\nlimit_usd = -5',
            "cost.budgets[0].limit_usd must be a positive number, got -5",
        ),
        (
            'scope = "key"\nlimit_usd = "ten"',
            "cost.budgets[0].limit_usd must be a positive number, got str 'ten'",
        ),
        (
            'scope = "tenant"\nlimit_usd = 5\nperiod = "year"',
            "cost.budgets[0].period must be one of ('day', 'week', 'month'), got 'year'",
        ),
        (
            'scope = "tenant"\nlimit_usd = 5\nalert_at = 1.5',
            "cost.budgets[0].alert_at must be in (0, 1], got 1.5",
        ),
        (
            'scope = "tenant"\nlimit_usd = 5\ndowngrade_at = 0',
            "cost.budgets[0].downgrade_at must be a positive number, got 0",
        ),
        (
            'scope = "planet"\nlimit_usd = 5',
            "cost.budgets[0].scope must be one of ('global', 'key', 'tenant', 'model'), "
            "got 'planet'",
        ),
        (
            'scope = "key"\nmatch = ""\nlimit_usd = 5',
            "cost.budgets[0].match must be a non-empty string, got ''",
        ),
        (
            "limit_usd = 5",
            "cost.budgets[0] needs scope (one of 'global', 'key', 'tenant', 'model')",
        ),
        ('scope = "key"', "cost.budgets[0] needs limit_usd (USD per period)"),
        (
            'scope = "tenant"\nmatch = "acme"\nlimit_usd = 5\ndowngrade_to = "nope"',
            "cost.budgets[0].downgrade_to names 'nope', which is not a configured "
            "model (models: ['a', 'b', 'c'])",
        ),
    ],
)
def test_bad_budgets(entry: str, message: str) -> None:
    assert error(f"[[cost.budgets]]\n{entry}\n") == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'key_sha256 = "' + "g" * 64 + '"',
            "admin.key_sha256 must be 64 lowercase hex digits (`hotpath hash-key` prints it), "
            f"got {'g' * 64!r}",
        ),
        (
            'key_sha256 = "' + ADMIN_DIGEST.upper() + '"',
            "admin.key_sha256 must be 64 lowercase hex digits (`hotpath hash-key` prints it), "
            f"got {ADMIN_DIGEST.upper()!r}",
        ),
        (
            'key_sha256 = "abc"',
            "admin.key_sha256 must be 64 lowercase hex digits (`hotpath hash-key` prints it), "
            "got 'abc'",
        ),
        ('key_env = ""', "admin.key_env must be a non-empty string, got ''"),
        (
            'keys_store = "memory://"',
            "admin.keys_store must be a sqlite:///, redis://, rediss://, unix:// URL, "
            "got 'memory://'",
        ),
    ],
)
def test_bad_admin(text: str, message: str) -> None:
    assert error(f"[admin]\n{text}\n") == message


@pytest.mark.parametrize(
    ("select", "message"),
    [
        (
            'candidates = ["a", "zz"]',
            "models.auto.select.candidates names 'zz', which is not a configured model with "
            "deployments (models: ['a', 'auto', 'b', 'c'])",
        ),
        (
            'candidates = ["a", "c"]',
            "models.c.quality must be set (0 to 1): models.auto selects among its candidates "
            "by quality",
        ),
        (
            "candidates = []",
            "models.auto.select.candidates must be a non-empty list of model names, got []",
        ),
        (
            'candidates = "a"',
            "models.auto.select.candidates must be a non-empty list of model names, got 'a'",
        ),
        (
            "min_quality = 0.5",
            "models.auto.select needs candidates (a list of model names)",
        ),
        (
            'candidates = ["a", "b"], long_prompt_tokens = 1000, long_prompt_model = "c"',
            "models.auto.select.long_prompt_model must be one of the candidates ['a', 'b'], "
            "got 'c'",
        ),
        (
            'candidates = ["a", "b"], long_prompt_tokens = 1000',
            "models.auto.select.long_prompt_tokens and long_prompt_model go together, "
            "got 1000 and None",
        ),
        (
            'candidates = ["a", "b"], long_prompt_tokens = 0, long_prompt_model = "b"',
            "models.auto.select.long_prompt_tokens must be an int >= 1, got 0",
        ),
        (
            'candidates = ["a", "b"], expected_completion_tokens = 0',
            "models.auto.select.expected_completion_tokens must be an int >= 1, got 0",
        ),
        (
            'candidates = ["a", "b"], weights = { cost = 0, quality = 0, speed = 0 }',
            "models.auto.select.weights must not all be 0, got Weights(cost=0, quality=0, speed=0)",
        ),
        (
            'candidates = ["a", "b"], weights = { cost = -1 }',
            "models.auto.select.weights.cost must be a number >= 0, got -1",
        ),
        (
            'candidates = ["a", "b"], weights = { speed = "x" }',
            "models.auto.select.weights.speed must be a number >= 0, got str 'x'",
        ),
        (
            'candidates = ["a", "b"], weights = "fast"',
            "models.auto.select.weights must be a table, got 'fast'",
        ),
    ],
)
def test_bad_select(select: str, message: str) -> None:
    assert error(f"[models.auto]\nselect = {{ {select} }}\n") == message


def test_a_selecting_model_is_not_a_candidate() -> None:
    assert error(
        '[models.auto]\nselect = { candidates = ["a"] }\n'
        '[models.auto2]\nselect = { candidates = ["auto"] }\n'
    ) == (
        "models.auto2.select.candidates names 'auto', which is not a configured model with "
        "deployments (models: ['a', 'auto', 'auto2', 'b', 'c'])"
    )


@pytest.mark.parametrize("other", ['upstream = "east"', 'deployments = ["east"]'])
def test_a_select_route_has_no_upstream(other: str) -> None:
    shown = "upstream 'east'" if other.startswith("upstream") else "deployments ['east']"
    assert error(f'[models.auto]\n{other}\nselect = {{ candidates = ["a", "b"] }}\n') == (
        "models.auto with select picks among other models: it takes no upstream or "
        f"deployments, got {shown}"
    )


def test_select_is_a_table_and_not_the_catch_all() -> None:
    assert error('[models.auto]\nselect = "a"\n') == "models.auto.select must be a table, got 'a'"
    assert error('[models."*"]\nselect = { candidates = ["a", "b"] }\n') == (
        "models.* cannot select: name the selecting model"
    )


@pytest.mark.parametrize(
    ("quality", "message"),
    [
        ("1.5", "models.d.quality must be in [0, 1], got 1.5"),
        ("-0.1", "models.d.quality must be a number >= 0, got -0.1"),
        ('"high"', "models.d.quality must be a number >= 0, got str 'high'"),
    ],
)
def test_bad_quality(quality: str, message: str) -> None:
    assert error(f'[models.d]\nupstream = "east"\nquality = {quality}\n') == message


@pytest.mark.parametrize(
    ("min_quality", "message"),
    [
        ("2", "models.auto.select.min_quality must be a number in [0, 1], got 2"),
        ('"high"', "models.auto.select.min_quality must be a number >= 0, got str 'high'"),
    ],
)
def test_min_quality_is_checked_at_load(min_quality: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(
            f'[models.auto]\nselect = {{ candidates = ["a", "b"], min_quality = {min_quality} }}\n'
        )
    assert str(info.value) == message


def test_a_sqlite_store_url_with_a_host_is_refused_at_load() -> None:
    with pytest.raises(ConfigError) as info:
        load('[cost]\nstore = "sqlite://host/usage.db"\n')
    assert str(info.value) == (
        "cost.store must be sqlite:///relative/path.db or sqlite:////absolute/path.db "
        "(three slashes, no host), got 'sqlite://host/usage.db'"
    )
