"""The price table: the shipped prices.toml is complete and sane, costs add up,
model names are found as clients spell them (and never guessed), and bad
prices in config are reported by field and value."""

from __future__ import annotations

import datetime
import logging
import re
from typing import Any

import pytest

from hotpath._errors import ConfigError
from hotpath.cost import _prices
from hotpath.cost._prices import Price, PriceTable
from hotpath.cost._usage import Usage

KNOWN_PROVIDERS = {
    "openai",
    "anthropic",
    "google",
    "mistral",
    "deepseek",
    "together",
    "groq",
    "fireworks",
}
OPEN_MODEL_HOSTS = {"deepseek", "together", "groq", "fireworks"}
# Models the shipped table lists at a price of 0 on purpose.
FREE = {"text-embedding-004"}

# The models the table must cover, by provider family.
REQUIRED = [
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "o1",
    "o3",
    "o3-mini",
    "o4-mini",
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "gpt-3.5-turbo",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
    "claude-opus-4-1",
    "claude-opus-4",
    "claude-sonnet-4-5",
    "claude-sonnet-4",
    "claude-3-7-sonnet",
    "claude-3-5-sonnet",
    "claude-3-5-haiku",
    "claude-haiku-4-5",
    "claude-3-haiku",
    "claude-3-opus",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-2.0-flash",
    "gemini-1.5-pro",
    "gemini-1.5-flash",
    "text-embedding-004",
    "gemini-embedding-001",
    "mistral-large-latest",
    "mistral-medium-latest",
    "mistral-small-latest",
    "codestral-latest",
    "open-mistral-nemo",
    "mistral-embed",
    "meta-llama/Llama-3.3-70B-Instruct-Turbo",
    "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo",
    "llama-3.3-70b-versatile",
    "llama-3.1-8b-instant",
    "deepseek-chat",
    "deepseek-reasoner",
    "Qwen/Qwen2.5-72B-Instruct-Turbo",
    "mixtral-8x7b-32768",
]


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.default()


def small_table() -> PriceTable:
    return PriceTable.from_mapping(
        {
            "date": "2025-12-01",
            "models": {
                "gpt-4o": {"provider": "openai", "input": 2.5, "cached_input": 1.25, "output": 10},
                "emb": {"provider": "openai", "kind": "embedding", "input": 0.02},
            },
        }
    )


def message(exc: pytest.ExceptionInfo[ConfigError]) -> str:
    return str(exc.value)


# ---------------------------------------------------------------- the shipped table


def test_default_is_parsed_once(table: PriceTable) -> None:
    """default() returns the same parsed table each time."""
    assert PriceTable.default() is table


def test_shipped_table_covers_the_required_models(table: PriceTable) -> None:
    missing = [name for name in REQUIRED if name not in table.models()]
    assert missing == []


def test_shipped_date_is_an_iso_date(table: PriceTable) -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", table.date)
    checked = datetime.date.fromisoformat(table.date)
    assert checked >= datetime.date(2025, 1, 1)
    assert table.source


def test_shipped_prices_are_complete_and_sane(table: PriceTable) -> None:
    """Every entry: a known provider, a positive input price (unless listed as
    free), a positive output for chat models and none for embeddings, and a
    cached price no higher than the input price."""
    for name in table.models():
        price = table.lookup(name)
        assert price is not None, name
        assert price.provider in KNOWN_PROVIDERS, name
        if name in FREE:
            assert price.input == 0, name
        else:
            assert price.input > 0, name
        if price.kind == "chat":
            assert price.output > 0, name
        else:
            assert price.kind == "embedding", name
            assert price.output == 0, name
        if price.cached_input is not None:
            assert price.cached_input >= 0, name
            assert price.cached_input <= price.input, name
        if price.context_window is not None:
            assert price.context_window >= 1000, name


def test_shipped_table_has_every_provider_family(table: PriceTable) -> None:
    providers = {p.provider for name in table.models() if (p := table.lookup(name)) is not None}
    for family in ("openai", "anthropic", "google", "mistral"):
        assert family in providers
    assert providers & OPEN_MODEL_HOSTS
    assert len(table) == len(table.models())
    assert len(table) >= len(REQUIRED)


def test_shipped_file_survives_a_round_trip_through_from_mapping() -> None:
    """The packaged file parses with the strict parser (what default() does)."""
    import tomllib
    from importlib.resources import files

    text = files("hotpath").joinpath("cost", "prices.toml").read_text(encoding="utf-8")
    parsed = PriceTable.from_mapping(tomllib.loads(text))
    assert parsed.models() == PriceTable.default().models()


def test_repr_names_the_size_and_date(table: PriceTable) -> None:
    assert repr(table) == f"PriceTable({len(table)} models, date={table.date!r})"


# ---------------------------------------------------------------- cost arithmetic


def test_cost_bills_cached_tokens_at_the_cached_price() -> None:
    price = Price(input=2.5, output=10.0, cached_input=1.25)
    usage = Usage(prompt_tokens=1_000, completion_tokens=500, cached_tokens=200)
    # 800 * 2.5 + 200 * 1.25 + 500 * 10, per million
    assert price.cost(usage) == pytest.approx(0.00725)


def test_cost_without_a_cached_price_bills_cached_tokens_as_input() -> None:
    price = Price(input=3.0, output=15.0)
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000, cached_tokens=400_000)
    assert price.cost(usage) == pytest.approx(18.0)


def test_cost_of_nothing_is_zero() -> None:
    assert Price(input=3.0, output=15.0).cost(Usage()) == 0


def test_embedding_cost_counts_prompt_tokens_only(table: PriceTable) -> None:
    cost = table.cost("text-embedding-3-small", Usage(prompt_tokens=2_000_000))
    assert cost == pytest.approx(0.04)


def test_table_cost_uses_the_looked_up_price(table: PriceTable) -> None:
    usage = Usage(prompt_tokens=10_000, completion_tokens=2_000, cached_tokens=4_000)
    # 6000 * 3 + 4000 * 0.3 + 2000 * 15, per million
    assert table.cost("claude-sonnet-4-5-20250929", usage) == pytest.approx(0.0492)


# ---------------------------------------------------------------- lookup


@pytest.mark.parametrize(
    ("sent", "key"),
    [
        ("gpt-4o", "gpt-4o"),
        ("GPT-4o", "gpt-4o"),
        ("openai/gpt-4o", "gpt-4o"),
        ("azure/gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-2024-11-20", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai/gpt-4.1-2025-04-14", "gpt-4.1"),
        ("o1-preview", "o1"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
        ("claude-3-5-sonnet@20240620", "claude-3-5-sonnet"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("anthropic/claude-haiku-4-5", "claude-haiku-4-5"),
        ("bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
        ("claude-opus-4-20250514", "claude-opus-4"),
        ("gemini/gemini-2.5-flash", "gemini-2.5-flash"),
        ("google/gemini-2.5-pro", "gemini-2.5-pro"),
        ("models/gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("gemini-1.5-pro-002", "gemini-1.5-pro"),
        ("mistral/mistral-large-latest", "mistral-large-latest"),
        ("groq/llama-3.3-70b-versatile", "llama-3.3-70b-versatile"),
        ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
        (
            "together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo",
            "meta-llama/Llama-3.3-70B-Instruct-Turbo",
        ),
        ("qwen/qwen2.5-72b-instruct-turbo", "Qwen/Qwen2.5-72B-Instruct-Turbo"),
        ("deepseek/deepseek-chat", "deepseek-chat"),
    ],
)
def test_lookup_finds_the_model_as_clients_name_it(table: PriceTable, sent: str, key: str) -> None:
    price = table.lookup(sent)
    assert price is not None
    assert price is table.lookup(key)
    assert sent in table


def test_mini_is_never_priced_as_its_big_sibling(table: PriceTable) -> None:
    mini, big = table.lookup("gpt-4o-mini"), table.lookup("gpt-4o")
    assert mini is not None
    assert big is not None
    assert mini != big
    assert table.lookup("gpt-4o-mini-2024-07-18") == mini
    assert table.lookup("openai/gpt-4o-mini") == mini


def test_an_older_snapshot_keeps_its_own_price(table: PriceTable) -> None:
    """gpt-4o-2024-05-13 is listed on its own, so the date rule does not apply."""
    price = table.lookup("gpt-4o-2024-05-13")
    assert price is not None
    assert price.input == 5.0
    assert price != table.lookup("gpt-4o")


@pytest.mark.parametrize(
    "sent",
    [
        "gpt-4o-large",  # a prefix of a known name is not a match
        "gpt-4",
        "gpt-4o-realtime-preview",  # another model, not a preview of gpt-4o
        "gpt-3.5-turbo-1106",  # dated by month-day: priced apart, not normalised
        "gemini-2.5-flash-preview-05-20",  # a dated preview, priced apart
        "claude-3-5",
        "sonnet",
        "my-org/gpt-4o",  # not a provider prefix
        "mock-small",
        "",
    ],
)
def test_lookup_does_not_guess(table: PriceTable, sent: str) -> None:
    assert table.lookup(sent) is None
    assert sent not in table
    assert table.cost(sent, Usage(prompt_tokens=10)) is None


def test_contains_is_false_for_non_strings(table: PriceTable) -> None:
    assert 42 not in table
    assert None not in table


def test_lookup_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_prices, "_MEMO_LIMIT", 3)
    prices = small_table()
    for i in range(10):
        assert prices.lookup(f"unknown-{i}") is None
        assert prices.lookup(f"openai/gpt-4o-2024-08-{i:02d}") is not None
    assert len(prices._memo) <= 3


# ---------------------------------------------------------------- unknown models


def test_unknown_model_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    prices = small_table()
    with caplog.at_level(logging.WARNING, logger="hotpath.cost"):
        assert prices.cost("mystery-model", Usage(prompt_tokens=5)) is None
        assert prices.cost("mystery-model", Usage(prompt_tokens=7)) is None
        assert prices.cost("gpt-4o", Usage(prompt_tokens=7)) is not None
    records = [r for r in caplog.records if r.name == "hotpath.cost"]
    assert [r.getMessage() for r in records] == [
        "no price for model 'mystery-model': its cost is recorded as unknown; "
        "add it under [cost.prices]"
    ]
    assert records[0].levelno == logging.WARNING


def test_each_unknown_model_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    prices = small_table()
    with caplog.at_level(logging.WARNING, logger="hotpath.cost"):
        for name in ("a", "b", "a", "b", "c"):
            prices.cost(name, Usage())
    assert len([r for r in caplog.records if r.name == "hotpath.cost"]) == 3


def test_warnings_stop_after_the_limit(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_prices, "_WARN_LIMIT", 2)
    prices = small_table()
    with caplog.at_level(logging.WARNING, logger="hotpath.cost"):
        for i in range(5):
            prices.cost(f"m{i}", Usage())
    messages = [r.getMessage() for r in caplog.records if r.name == "hotpath.cost"]
    assert len(messages) == 3
    assert messages[-1] == "no price for 2 models: further unknown models are not logged"


# ---------------------------------------------------------------- from_mapping errors


def models_doc(entry: Any, name: str = "gpt-4o") -> dict[str, Any]:
    return {"date": "2025-12-01", "models": {name: entry}}


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            {"input": -1.0, "output": 10.0},
            'prices.models."gpt-4o".input must be a number >= 0, got -1.0',
        ),
        (
            {"input": 2.5, "output": -1.0},
            'prices.models."gpt-4o".output must be a number >= 0, got -1.0',
        ),
        (
            {"input": "2.5", "output": 10.0},
            "prices.models.\"gpt-4o\".input must be a number >= 0, got str '2.5'",
        ),
        (
            {"input": 2.5, "output": True},
            'prices.models."gpt-4o".output must be a number >= 0, got bool True',
        ),
        (
            {"input": 2.5, "output": float("nan")},
            'prices.models."gpt-4o".output must be a number >= 0, got float nan',
        ),
        (
            {"input": 2.5, "output": 10.0, "ouput": 10.0},
            'prices.models."gpt-4o".ouput is not a price field (expected one of '
            "cached_input, context_window, input, kind, output, provider), got 10.0",
        ),
        (
            {"output": 10.0},
            'prices.models."gpt-4o".input is missing: a model not in the price table '
            "needs an input price (USD per million prompt tokens)",
        ),
        (
            {"input": 2.5},
            'prices.models."gpt-4o".output is missing: a chat model needs an output '
            "price (USD per million completion tokens)",
        ),
        (
            {"input": 2.5, "output": 10.0, "kind": "completion"},
            "prices.models.\"gpt-4o\".kind must be 'chat' or 'embedding', got 'completion'",
        ),
        (
            {"input": 2.5, "output": 10.0, "context_window": 0},
            'prices.models."gpt-4o".context_window must be an int >= 1, got 0',
        ),
        (
            {"input": 2.5, "output": 10.0, "context_window": 128000.0},
            'prices.models."gpt-4o".context_window must be an int >= 1, got 128000.0',
        ),
        (
            {"input": 2.5, "output": 10.0, "context_window": "128k"},
            "prices.models.\"gpt-4o\".context_window must be an int >= 1, got '128k'",
        ),
        (
            {"input": 2.5, "output": 10.0, "cached_input": 3.0},
            'prices.models."gpt-4o".cached_input must be <= input (2.5), got 3.0',
        ),
        (
            {"input": 2.5, "output": 10.0, "provider": ""},
            "prices.models.\"gpt-4o\".provider must be a non-empty string, got ''",
        ),
        (
            {"input": 0.1, "output": 1.0, "kind": "embedding"},
            'prices.models."gpt-4o".output must be absent or 0 for an embedding model, got 1.0',
        ),
        (
            2.5,
            'prices.models."gpt-4o" must be a table of prices, got 2.5',
        ),
    ],
)
def test_from_mapping_names_the_bad_field_and_value(entry: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        PriceTable.from_mapping(models_doc(entry))
    assert message(exc) == expected


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            {"date": "01/12/2025", "models": {}},
            "prices.date must be an ISO date (YYYY-MM-DD), got '01/12/2025'",
        ),
        (
            {"date": "2025-13-01", "models": {}},
            "prices.date must be an ISO date (YYYY-MM-DD), got '2025-13-01'",
        ),
        ({"date": "2025-12-01"}, "prices.models is missing: a price table needs a models table"),
        ({"models": []}, "prices.models must be a table, got []"),
        ({"models": {}, "source": 3}, "prices.source must be a string, got 3"),
        (
            {"models": {}, "currency": "EUR"},
            "prices.currency is not a price table field (expected one of date, models, source), "
            "got 'EUR'",
        ),
    ],
)
def test_from_mapping_checks_the_top_level(doc: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        PriceTable.from_mapping(doc)
    assert message(exc) == expected


def test_from_mapping_uses_the_given_where() -> None:
    with pytest.raises(ConfigError) as exc:
        PriceTable.from_mapping(models_doc({"input": -2}), where="my.toml")
    assert message(exc) == 'my.toml.models."gpt-4o".input must be a number >= 0, got -2'


def test_from_mapping_accepts_a_toml_date_and_defaults() -> None:
    prices = PriceTable.from_mapping(
        {"date": datetime.date(2025, 12, 1), "models": {"e": {"kind": "embedding", "input": 1}}}
    )
    assert prices.date == "2025-12-01"
    assert prices.source == ""
    assert prices.lookup("e") == Price(input=1.0, kind="embedding")


# ---------------------------------------------------------------- overrides


def test_override_with_input_replaces_the_price() -> None:
    prices = small_table().with_overrides({"gpt-4o": {"input": 3.0, "output": 12.0}})
    # The old cached price and provider are gone: the entry is a whole new price.
    assert prices.lookup("gpt-4o") == Price(input=3.0, output=12.0)


def test_partial_override_updates_only_its_fields() -> None:
    base = small_table()
    prices = base.with_overrides({"gpt-4o": {"output": 12.0, "context_window": 128000}})
    assert prices.lookup("gpt-4o") == Price(
        input=2.5, output=12.0, cached_input=1.25, provider="openai", context_window=128000
    )
    # The original table is unchanged.
    assert base.lookup("gpt-4o") == Price(
        input=2.5, output=10.0, cached_input=1.25, provider="openai"
    )


def test_override_extends_the_table() -> None:
    base = small_table()
    prices = base.with_overrides(
        {
            "my-finetune": {"provider": "openai", "input": 3.0, "output": 12.0},
            "my-embedder": {"kind": "embedding", "input": 0.05},
        }
    )
    assert len(prices) == len(base) + 2
    assert prices.cost("my-finetune", Usage(1_000_000, 1_000_000)) == pytest.approx(15.0)
    assert prices.cost("my-embedder", Usage(1_000_000)) == pytest.approx(0.05)
    assert "my-finetune" not in base
    assert prices.date == base.date


def test_override_of_the_shipped_table(table: PriceTable) -> None:
    prices = table.with_overrides({"gpt-4o": {"output": 11.0}})
    custom = prices.lookup("gpt-4o-2024-08-06")
    assert custom is not None
    assert custom.output == 11.0
    assert len(prices) == len(table)


@pytest.mark.parametrize(
    ("models", "expected"),
    [
        (
            {"gpt-4o": {"output": -1.0}},
            'cost.prices."gpt-4o".output must be a number >= 0, got -1.0',
        ),
        (
            {"gpt-4o": {"input": "cheap"}},
            "cost.prices.\"gpt-4o\".input must be a number >= 0, got str 'cheap'",
        ),
        (
            {"gpt-4o": {"cached_input": False}},
            'cost.prices."gpt-4o".cached_input must be a number >= 0, got bool False',
        ),
        (
            {"gpt-4o": {"price": 3}},
            'cost.prices."gpt-4o".price is not a price field (expected one of '
            "cached_input, context_window, input, kind, output, provider), got 3",
        ),
        (
            {"new-model": {"output": 3.0}},
            'cost.prices."new-model".input is missing: a model not in the price table '
            "needs an input price (USD per million prompt tokens)",
        ),
        (
            {"gpt-4o": {"kind": "image"}},
            "cost.prices.\"gpt-4o\".kind must be 'chat' or 'embedding', got 'image'",
        ),
        (
            {"gpt-4o": {"context_window": -5}},
            'cost.prices."gpt-4o".context_window must be an int >= 1, got -5',
        ),
        (
            {"gpt-4o": {"cached_input": 5.0}},
            'cost.prices."gpt-4o".cached_input must be <= input (2.5), got 5.0',
        ),
        (
            {"gpt-4o": {"kind": "embedding"}},
            'cost.prices."gpt-4o".output must be absent or 0 for an embedding model, got 10.0',
        ),
        (
            {"gpt-4o": "2.5"},
            "cost.prices.\"gpt-4o\" must be a table of prices, got '2.5'",
        ),
        (
            {"": {"input": 1.0, "output": 1.0}},
            "cost.prices model name must be a non-empty string, got ''",
        ),
    ],
)
def test_override_errors_name_the_field_and_value(models: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        small_table().with_overrides(models)
    assert message(exc) == expected


def test_override_where_is_configurable() -> None:
    with pytest.raises(ConfigError) as exc:
        small_table().with_overrides({"x": {"input": -1}}, where="gateway.prices")
    assert message(exc) == 'gateway.prices."x".input must be a number >= 0, got -1'


# ---------------------------------------------------------------- Price itself


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"input": -1.0}, "Price.input must be a number >= 0, got -1.0"),
        ({"input": 1.0, "cached_input": 2.0}, "Price.cached_input must be <= input (1.0), got 2.0"),
        ({"input": 1.0, "kind": "audio"}, "Price.kind must be 'chat' or 'embedding', got 'audio'"),
        (
            {"input": 1.0, "output": 2.0, "kind": "embedding"},
            "Price.output must be 0 for an embedding model, got 2.0",
        ),
        ({"input": 1.0, "context_window": 0}, "Price.context_window must be an int >= 1, got 0"),
    ],
)
def test_price_rejects_bad_values(kwargs: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        Price(**kwargs)
    assert message(exc) == expected


def test_table_rejects_non_price_values() -> None:
    with pytest.raises(TypeError, match=r"prices\['x'\] must be a Price, got 1.0"):
        PriceTable({"x": 1.0})  # type: ignore[dict-item]
