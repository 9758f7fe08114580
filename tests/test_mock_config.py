"""The mock upstream's config, latency distributions, content, token counting and CLI."""

from __future__ import annotations

import argparse
import math
import random
import threading
from typing import Any

import bpe_openai  # type: ignore[import-untyped]
import httpx
import pytest

import hotpath.providers.mock
from hotpath import ConfigError
from hotpath._tokens import count_chat_prompt, encoder_for
from hotpath.providers.mock import Latency, MockConfig
from hotpath.providers.mock._cli import add_parser, config_from_args, run
from hotpath.providers.mock._content import VOCAB, Source, fill_schema
from hotpath.providers.mock._server import CONFIG_ENV, app_from_env


def test_public_names_exist_and_are_sorted() -> None:
    names = hotpath.providers.mock.__all__
    assert sorted(names) == list(names)
    for name in names:
        assert hasattr(hotpath.providers.mock, name)


# --- Latency -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("300ms", Latency.constant(0.3)),
        ("0.3s", Latency.constant(0.3)),
        ("0.3", Latency.constant(0.3)),
        ("0", Latency()),
        ("uniform:100ms,300ms", Latency.uniform(0.1, 0.3)),
        ("lognormal:200ms,0.5", Latency.lognormal(0.2, 0.5)),
        ("exponential:200ms", Latency.exponential(0.2)),
    ],
)
def test_latency_parses_and_round_trips(text: str, expected: Latency) -> None:
    parsed = Latency.parse(text)
    assert parsed.kind == expected.kind
    assert parsed.params == pytest.approx(expected.params)
    again = Latency.parse(str(parsed))
    assert again.kind == parsed.kind
    assert again.params == pytest.approx(parsed.params)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "fast",
        "-5ms",
        "nan",
        "inf",
        "uniform:300ms",
        "uniform:3s,1s",
        "lognormal:1s,x",
        "lognormal:1s,-1",
        "zipf:1",
    ],
)
def test_bad_latency_text_is_named(text: str) -> None:
    with pytest.raises(ConfigError, match="latency") as info:
        Latency.parse(text)
    assert repr(text) in str(info.value)


def test_latency_samples_stay_in_range() -> None:
    rng = random.Random(1)
    uniform = [Latency.uniform(0.1, 0.3).sample(rng) for _ in range(500)]
    assert min(uniform) >= 0.1
    assert max(uniform) <= 0.3
    exponential = [Latency.exponential(0.2).sample(rng) for _ in range(2000)]
    assert sum(exponential) / len(exponential) == pytest.approx(0.2, abs=0.03)
    lognormal = sorted(Latency.lognormal(0.2, 0.5).sample(rng) for _ in range(2001))
    assert lognormal[1000] == pytest.approx(0.2, abs=0.02)  # the median
    assert Latency.constant(0.05).sample(rng) == 0.05


def test_latency_rejects_bad_params() -> None:
    with pytest.raises(ConfigError, match=r"Latency\.params"):
        Latency.constant(-1)
    with pytest.raises(ConfigError, match=r"Latency\.kind"):
        Latency("gamma", (1.0,))  # type: ignore[arg-type]


# --- MockConfig --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ttft", "300ms"),
        ("tokens_per_second", 0),
        ("tokens_per_second", math.inf),
        ("completion_tokens", 0),
        ("completion_tokens", True),
        ("embedding_dimensions", 0),
        ("faults", {"explode": 0.1}),
        ("faults", {"429": 1.5}),
        ("faults", {"429": 0.6, "500": 0.6}),
        ("retry_after", -1),
        ("seed", 1.5),
        ("api_key", ""),
        ("rate_limit_rpm", 0),
        ("rate_limit_tpm", 2.5),
        ("rate_limit_tpm", True),
        ("context_window", -1),
        ("context_windows", {"gpt-4o": 0}),
        ("context_windows", [("gpt-4o", 10)]),
        ("capacity", 0),
        ("model_faults", {"gpt-4o": {"boom": 0.5}}),
        ("model_faults", {"gpt-4o": {"500": 2}}),
        ("model_faults", {"gpt-4o": ["500"]}),
    ],
)
def test_bad_config_names_field_and_value(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        MockConfig(**{field: value})
    message = str(info.value)
    assert f"MockConfig.{field}" in message
    shown: Any = value
    if field == "faults":
        shown = next(iter(value))
    elif field == "model_faults":
        shown = value["gpt-4o"]
        shown = next(iter(shown)) if isinstance(shown, dict) else shown
    elif field == "context_windows" and isinstance(value, dict):
        shown = value["gpt-4o"]
    assert repr(shown) in message or repr(value) in message


def test_config_is_frozen_and_round_trips_through_json() -> None:
    config = MockConfig(
        ttft=Latency.parse("uniform:10ms,20ms"),
        tokens_per_second=50.0,
        faults={"429": 0.25},
        seed=3,
        api_key="k",
        rate_limit_rpm=60,
        rate_limit_tpm=90_000,
        context_window=8192,
        context_windows={"gpt-4o": 128_000},
        capacity=4,
        model_faults={"gpt-4o": {"500": 0.5, "hang": 0.1}},
    )
    with pytest.raises(AttributeError):
        config.seed = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.faults["500"] = 0.1  # type: ignore[index]
    with pytest.raises(TypeError):
        config.context_windows["x"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        config.model_faults["gpt-4o"]["429"] = 0.1  # type: ignore[index]
    again = MockConfig.from_json(config.to_json())
    assert again.to_json() == config.to_json()
    assert again == config
    assert (again.window("gpt-4o"), again.window("gpt-4.1")) == (128_000, 8192)
    assert dict(again.faults_for("gpt-4o")) == {"500": 0.5, "hang": 0.1}
    assert dict(again.faults_for("gpt-4.1")) == {"429": 0.25}
    with pytest.raises(ConfigError, match="unknown keys"):
        MockConfig.from_json(b'{"sed": 1}')


def test_partial_json_updates_keep_the_other_fields() -> None:
    config = MockConfig(completion_tokens=7, rate_limit_rpm=10)
    updated = config.updated_from_json(b'{"capacity": 3, "rate_limit_rpm": null}')
    assert (updated.completion_tokens, updated.capacity, updated.rate_limit_rpm) == (7, 3, None)
    assert MockConfig.from_json(b'{"capacity": 3}') == MockConfig(capacity=3)
    with pytest.raises(ConfigError, match=r"MockConfig\.capacity"):
        config.updated_from_json(b'{"capacity": "many"}')


def test_app_factory_reads_config_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, MockConfig(completion_tokens=3).to_json().decode())
    assert app_from_env().config.completion_tokens == 3


# --- content and tokens ------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["cl100k_base", "o200k_base"])
def test_every_vocabulary_word_is_one_token(encoding: str) -> None:
    enc = bpe_openai.get_encoding(encoding)
    assert len(VOCAB) == len(set(VOCAB)) == 256
    for word in VOCAB:
        assert len(enc.encode(word)) == 1, word
        assert len(enc.encode(" " + word)) == 1, word
    words = Source(b"seed").words(300)
    assert len(enc.encode("".join(words))) == 300


def test_fill_schema_covers_common_types() -> None:
    schema = {
        "type": "object",
        "properties": {
            "s": {"type": "string"},
            "i": {"type": "integer", "minimum": 500},
            "n": {"type": "number", "maximum": 1},
            "b": {"type": "boolean"},
            "e": {"enum": ["x", "y"]},
            "a": {"type": "array", "items": {"type": "integer"}, "minItems": 2},
            "o": {"type": "object", "properties": {"deep": {"type": ["null", "string"]}}},
            "c": {"const": 42},
            "u": {"anyOf": [{"type": "boolean"}, {"type": "string"}]},
        },
    }
    value = fill_schema(schema, Source(b"s"))
    assert isinstance(value["s"], str)
    assert value["i"] == 500
    assert value["n"] <= 1
    assert isinstance(value["b"], bool)
    assert value["e"] in ("x", "y")
    assert len(value["a"]) == 2
    assert isinstance(value["o"]["deep"], str)
    assert value["c"] == 42
    assert isinstance(value["u"], bool)
    assert fill_schema(schema, Source(b"s")) == value


def test_prompt_count_handles_names_parts_and_tool_calls() -> None:
    enc = bpe_openai.get_encoding("o200k_base")

    def n(text: str) -> int:
        return len(enc.encode(text))

    messages = [
        {"role": "user", "name": "ann", "content": [{"type": "text", "text": "hello"}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]},
    ]
    expected = 3 + (3 + n("user") + n("ann") + 1 + n("hello"))
    expected += 3 + n("assistant") + n('[{"id":"c"}]')
    assert count_chat_prompt(encoder_for("gpt-4o"), messages) == expected
    assert encoder_for("no-such-model").name == "o200k_base"
    assert encoder_for("gpt-3.5-turbo").name == "cl100k_base"


# --- CLI ---------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hotpath")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["mock-upstream", *argv])


def test_cli_flags_build_the_config() -> None:
    args = parse(
        "--ttft", "lognormal:200ms,0.5", "--tps", "40", "--completion-tokens", "8",
        "--embedding-dimensions", "256", "--fault", "429=0.1", "--fault", "hang=0.05",
        "--retry-after", "2", "--seed", "9", "--api-key", "k",
    )  # fmt: skip
    config = config_from_args(args)
    assert str(config.ttft) == "lognormal:200ms,0.5"
    assert config.tokens_per_second == 40
    assert (config.completion_tokens, config.embedding_dimensions) == (8, 256)
    assert dict(config.faults) == {"429": 0.1, "hang": 0.05}
    assert (config.retry_after, config.seed, config.api_key) == (2, 9, "k")
    assert (args.host, args.port, args.workers) == ("127.0.0.1", 9000, 1)
    assert (config.rate_limit_rpm, config.capacity, config.context_window) == (None, None, None)
    assert (dict(config.context_windows), dict(config.model_faults)) == ({}, {})


def test_cli_limit_flags_build_the_config() -> None:
    args = parse(
        "--rate-limit-rpm", "60", "--rate-limit-tpm", "90000", "--context-window", "8192",
        "--model-context-window", "gpt-4o=128000", "--model-context-window", "ft:a:b=100",
        "--capacity", "8", "--model-fault", "gpt-4o:500=0.5", "--model-fault", "gpt-4o:hang=0.1",
        "--model-fault", "ft:gpt-4o:org::x:429=1",
    )  # fmt: skip
    config = config_from_args(args)
    assert (config.rate_limit_rpm, config.rate_limit_tpm) == (60, 90000)
    assert (config.context_window, config.capacity) == (8192, 8)
    assert dict(config.context_windows) == {"gpt-4o": 128000, "ft:a:b": 100}
    assert {m: dict(f) for m, f in config.model_faults.items()} == {
        "gpt-4o": {"500": 0.5, "hang": 0.1},
        "ft:gpt-4o:org::x": {"429": 1.0},
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["--fault", "boom=0.1"],
        ["--fault", "429"],
        ["--ttft", "soon"],
        ["--model-fault", "500=1"],
        ["--model-fault", "gpt-4o:boom=1"],
        ["--model-fault", "gpt-4o:500=2"],
        ["--model-context-window", "gpt-4o"],
        ["--model-context-window", "gpt-4o=0"],
        ["--rate-limit-rpm", "many"],
    ],
)
def test_cli_rejects_bad_flags(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse(*argv)


def test_cli_run_reports_config_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(parse("--completion-tokens", "0")) == 2
    assert "MockConfig.completion_tokens" in capsys.readouterr().err
    assert run(parse("--rate-limit-rpm", "0")) == 2
    assert "MockConfig.rate_limit_rpm" in capsys.readouterr().err


def test_cli_run_serves_until_stopped(capsys: pytest.CaptureFixture[str]) -> None:
    stop = threading.Event()
    listening = threading.Event()
    urls: list[str] = []

    def on_listening(url: str) -> None:
        urls.append(url)
        listening.set()

    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(
            run(
                parse("--port", "0", "--completion-tokens", "4"),
                stop=stop,
                on_listening=on_listening,
            )
        )
    )
    thread.start()
    try:
        assert listening.wait(10)
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
        r = httpx.post(f"{urls[0]}/chat/completions", json=body)
        assert r.json()["usage"]["completion_tokens"] == 4
    finally:
        stop.set()
        thread.join(10)
    assert result == [0]
    assert f"mock upstream listening on {urls[0]}" in capsys.readouterr().out
