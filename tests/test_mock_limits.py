"""The mock upstream's provider limits over real sockets: rate limits (driven by a
manual clock), context windows, capacity, per-model faults and runtime
reconfiguration through ``/mock/config``."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import openai
import pytest

from hotpath._clock import ManualClock
from hotpath.providers.mock import MockConfig, MockUpstream
from hotpath.providers.mock._limits import format_reset

MESSAGES = [{"role": "user", "content": "Name a color."}]


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="module")
def server(clock: ManualClock) -> Iterator[MockUpstream]:
    with MockUpstream(clock=clock) as mock:
        yield mock


@pytest.fixture(autouse=True)
def mock(server: MockUpstream) -> MockUpstream:
    """The shared server with default behaviour, zeroed counters and full buckets."""
    server.set_config(MockConfig())
    server.reset()
    return server


@pytest.fixture(scope="module")
def http(server: MockUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.origin, timeout=5) as client:
        yield client


def chat(http: httpx.Client, model: str = "gpt-4o-mini", **extra: Any) -> httpx.Response:
    headers = extra.pop("headers", None)
    body = {"model": model, "messages": MESSAGES, **extra}
    return http.post("/v1/chat/completions", json=body, headers=headers)


def message(http: httpx.Client, model: str = "claude-haiku-4-5", **extra: Any) -> httpx.Response:
    headers = extra.pop("headers", None)
    body = {"model": model, "max_tokens": 10, "messages": MESSAGES, **extra}
    return http.post("/v1/messages", json=body, headers=headers)


def prompt_tokens(http: httpx.Client, model: str = "gpt-4o-mini") -> int:
    tokens: int = chat(http, model).json()["usage"]["prompt_tokens"]
    return tokens


def limit_headers(response: httpx.Response, kind: str) -> tuple[str, str, str]:
    h = response.headers
    return (
        h[f"x-ratelimit-limit-{kind}"],
        h[f"x-ratelimit-remaining-{kind}"],
        h[f"x-ratelimit-reset-{kind}"],
    )


# --- reset durations -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.0004, "1ms"),
        (0.12, "120ms"),
        (1, "1s"),
        (17.25, "17.25s"),
        (90.5, "1m30.5s"),
        (360, "6m0s"),
        (3600, "1h0m0s"),
        (3725, "1h2m5s"),
    ],
)
def test_reset_durations_are_written_like_openai(seconds: float, text: str) -> None:
    assert format_reset(seconds) == text


# --- requests per minute ------------------------------------------------------------


def test_rpm_headers_count_down_then_429_until_refilled(
    mock: MockUpstream, http: httpx.Client, clock: ManualClock
) -> None:
    mock.set_config(MockConfig(rate_limit_rpm=3))
    seen = [limit_headers(chat(http), "requests") for _ in range(3)]
    assert seen == [("3", "2", "20s"), ("3", "1", "40s"), ("3", "0", "1m0s")]
    r = chat(http)
    assert r.status_code == 429
    assert (r.headers["retry-after"], r.headers["retry-after-ms"]) == ("20", "20000")
    assert limit_headers(r, "requests") == ("3", "0", "1m0s")
    error = r.json()["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "requests",
        None,
        "rate_limit_exceeded",
    )
    assert error["message"].startswith("Rate limit reached for gpt-4o-mini")
    assert "Limit 3, Used 3, Requested 1" in error["message"]
    assert "x-ratelimit-limit-tokens" not in r.headers
    assert mock.stats().rate_limited == 1

    clock.advance(10)
    r = chat(http)
    assert (r.status_code, r.headers["retry-after"], r.headers["retry-after-ms"]) == (
        429,
        "10",
        "10000",
    )
    clock.advance(10)
    r = chat(http)
    assert r.status_code == 200
    assert limit_headers(r, "requests") == ("3", "0", "1m0s")
    assert mock.stats().rate_limited == 2


def test_retry_after_rounds_up_to_whole_seconds(
    mock: MockUpstream, http: httpx.Client, clock: ManualClock
) -> None:
    mock.set_config(MockConfig(rate_limit_rpm=1))
    assert chat(http).status_code == 200
    clock.advance(59.5)
    r = chat(http)
    assert r.status_code == 429
    assert (r.headers["retry-after"], r.headers["retry-after-ms"]) == ("1", "500")
    assert r.headers["x-ratelimit-reset-requests"] == "500ms"


def test_limit_headers_are_on_every_response_of_the_routes(
    mock: MockUpstream, http: httpx.Client
) -> None:
    mock.set_config(MockConfig(rate_limit_rpm=5))
    invalid = http.post("/v1/chat/completions", json={"model": "gpt-4o-mini"})
    assert invalid.status_code == 400
    assert limit_headers(invalid, "requests") == ("5", "5", "0s")  # not admitted
    fault = chat(http, headers={"x-mock-fault": "500"})
    assert fault.status_code == 500
    assert limit_headers(fault, "requests") == ("5", "4", "12s")
    stream = chat(http, stream=True)
    assert limit_headers(stream, "requests") == ("5", "3", "24s")
    embedding = http.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "a"})
    assert limit_headers(embedding, "requests") == ("5", "2", "36s")
    assert "x-ratelimit-limit-requests" not in http.get("/v1/models").headers


def test_openai_sdk_sees_the_rate_limit(mock: MockUpstream, server: MockUpstream) -> None:
    mock.set_config(MockConfig(rate_limit_rpm=1))
    with openai.OpenAI(base_url=server.url, api_key="x", max_retries=0) as sdk:
        sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "a"}])
        with pytest.raises(openai.RateLimitError) as info:
            sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "a"}])
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.response.headers["retry-after"] == "60"


# --- tokens per minute --------------------------------------------------------------


def test_tpm_counts_prompt_and_max_tokens_at_admission(
    mock: MockUpstream, http: httpx.Client
) -> None:
    prompt = prompt_tokens(http)
    mock.set_config(MockConfig(rate_limit_tpm=1000, completion_tokens=16))
    r = chat(http, max_tokens=50)
    assert r.json()["usage"]["completion_tokens"] == 16  # charged 50 all the same
    left = 1000 - (prompt + 50)
    assert limit_headers(r, "tokens")[:2] == ("1000", str(left))
    r = chat(http, max_completion_tokens=30, max_tokens=999)
    left -= prompt + 30
    assert r.headers["x-ratelimit-remaining-tokens"] == str(left)
    r = chat(http)  # no max_tokens: completion_tokens of the config
    left -= prompt + 16
    assert r.headers["x-ratelimit-remaining-tokens"] == str(left)
    r = chat(http, max_tokens=10, n=3)
    left -= prompt + 30
    assert r.headers["x-ratelimit-remaining-tokens"] == str(left)
    # time until full: the tokens used, refilled at 1000 per minute
    used = 1000 - left
    assert r.headers["x-ratelimit-reset-tokens"] == format_reset(used * 60 / 1000)
    assert "x-ratelimit-limit-requests" not in r.headers


def test_tpm_exhausted_gets_a_tokens_429_with_the_wait(
    mock: MockUpstream, http: httpx.Client, clock: ManualClock
) -> None:
    prompt = prompt_tokens(http)
    mock.set_config(MockConfig(rate_limit_tpm=600, rate_limit_rpm=100))
    cost = prompt + 200
    assert chat(http, max_tokens=200).status_code == 200
    assert chat(http, max_tokens=200).status_code == 200
    left = 600 - 2 * cost
    r = chat(http, max_tokens=200)
    assert r.status_code == 429
    error = r.json()["error"]
    assert (error["type"], error["code"]) == ("tokens", "rate_limit_exceeded")
    assert f"Requested {cost}" in error["message"]
    wait = (cost - left) / 10  # 600 per minute = 10 per second
    assert r.headers["retry-after"] == str(math.ceil(wait))
    assert r.headers["retry-after-ms"] == str(math.ceil(wait * 1000))
    # the refused request took nothing, not even from the requests bucket
    assert r.headers["x-ratelimit-remaining-requests"] == "98"
    assert r.headers["x-ratelimit-remaining-tokens"] == str(left)
    clock.advance(wait)
    assert chat(http, max_tokens=200).status_code == 200


def test_request_larger_than_the_tpm_limit_is_too_large(
    mock: MockUpstream, http: httpx.Client
) -> None:
    mock.set_config(MockConfig(rate_limit_tpm=100))
    r = chat(http, max_tokens=500)
    assert r.status_code == 429
    assert r.json()["error"]["type"] == "tokens"
    assert r.json()["error"]["message"].startswith("Request too large for gpt-4o-mini")
    assert r.headers["x-ratelimit-remaining-tokens"] == "100"


def test_tpm_counts_embedding_input_tokens(mock: MockUpstream, http: httpx.Client) -> None:
    mock.set_config(MockConfig(rate_limit_tpm=1000))
    body = {"model": "text-embedding-3-small", "input": ["one two", "three"]}
    r = http.post("/v1/embeddings", json=body)
    used = r.json()["usage"]["prompt_tokens"]
    assert r.headers["x-ratelimit-remaining-tokens"] == str(1000 - used)


def test_reset_refills_and_reconfiguring_keeps_unchanged_buckets(
    mock: MockUpstream, http: httpx.Client
) -> None:
    mock.set_config(MockConfig(rate_limit_rpm=2))
    chat(http)
    assert chat(http).headers["x-ratelimit-remaining-requests"] == "0"
    mock.set_config(MockConfig(rate_limit_rpm=2, faults={"500": 0.0}))
    assert chat(http).status_code == 429  # same limit: same bucket
    mock.reset()
    assert chat(http).headers["x-ratelimit-remaining-requests"] == "1"
    mock.set_config(MockConfig(rate_limit_rpm=4))
    assert chat(http).headers["x-ratelimit-remaining-requests"] == "3"


# --- Anthropic ----------------------------------------------------------------------


def test_anthropic_limit_headers_and_429(
    mock: MockUpstream, http: httpx.Client, clock: ManualClock
) -> None:
    mock.set_config(MockConfig(rate_limit_rpm=2, rate_limit_tpm=10_000))
    r = message(http)
    assert r.status_code == 200
    input_tokens = r.json()["usage"]["input_tokens"]

    def rfc3339(seconds_from_now: float) -> str:
        moment = datetime.fromtimestamp(math.ceil(clock.now() + seconds_from_now), UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    h = r.headers
    assert (
        h["anthropic-ratelimit-requests-limit"],
        h["anthropic-ratelimit-requests-remaining"],
    ) == (
        "2",
        "1",
    )
    assert h["anthropic-ratelimit-requests-reset"] == rfc3339(30)
    assert h["anthropic-ratelimit-tokens-limit"] == "10000"
    assert h["anthropic-ratelimit-tokens-remaining"] == str(10_000 - input_tokens - 10)
    assert h["anthropic-ratelimit-tokens-reset"] == rfc3339((input_tokens + 10) * 60 / 10_000)
    assert "x-ratelimit-limit-requests" not in h
    assert message(http).status_code == 200
    r = message(http)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "30"
    assert r.json() == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": r.json()["error"]["message"]},
    }
    assert "2 requests per minute" in r.json()["error"]["message"]
    assert mock.stats().rate_limited == 1


# --- context windows ----------------------------------------------------------------


def test_context_window_counts_prompt_and_max_tokens(
    mock: MockUpstream, http: httpx.Client
) -> None:
    prompt = prompt_tokens(http)
    mock.set_config(MockConfig(context_window=prompt + 10))
    assert chat(http).status_code == 200  # without max_tokens the prompt alone counts
    assert chat(http, max_tokens=10).status_code == 200
    r = chat(http, max_tokens=11)
    assert r.status_code == 400
    assert r.json()["error"] == {
        "message": f"This model's maximum context length is {prompt + 10} tokens. However, "
        f"your messages resulted in {prompt + 11} tokens. Please reduce the length of the "
        "messages.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
    assert mock.stats().context_length_exceeded == 1


def test_context_windows_per_model_and_header_override(
    mock: MockUpstream, http: httpx.Client
) -> None:
    prompt = prompt_tokens(http)
    mock.set_config(MockConfig(context_window=100_000, context_windows={"gpt-4o": prompt - 1}))
    assert chat(http, "gpt-4o").json()["error"]["code"] == "context_length_exceeded"
    assert chat(http, "gpt-4o-mini").status_code == 200
    small = {"x-mock-context-window": str(prompt - 1)}
    assert chat(http, "gpt-4o-mini", headers=small).status_code == 400
    big = {"x-mock-context-window": str(prompt)}
    assert chat(http, "gpt-4o", headers=big).status_code == 200
    bad = chat(http, headers={"x-mock-context-window": "lots"})
    assert bad.status_code == 400
    assert "x-mock-context-window" in bad.json()["error"]["message"]


def test_context_window_refuses_before_the_rate_limit_takes_anything(
    mock: MockUpstream, http: httpx.Client
) -> None:
    mock.set_config(MockConfig(context_window=5, rate_limit_rpm=10))
    r = chat(http)
    assert r.status_code == 400
    assert r.headers["x-ratelimit-remaining-requests"] == "10"


def test_anthropic_context_window_errors(mock: MockUpstream, http: httpx.Client) -> None:
    input_tokens = message(http).json()["usage"]["input_tokens"]
    mock.set_config(MockConfig(context_windows={"claude-haiku-4-5": input_tokens + 5}))
    assert message(http, max_tokens=5).status_code == 200
    r = message(http, max_tokens=6)
    assert r.status_code == 400
    assert r.json()["error"] == {
        "type": "invalid_request_error",
        "message": f"input length and `max_tokens` exceed context limit: {input_tokens} + 6 > "
        f"{input_tokens + 5}, decrease input length or `max_tokens` and try again",
    }
    r = message(http, headers={"x-mock-context-window": str(input_tokens - 1)})
    assert r.json()["error"]["message"] == (
        f"prompt is too long: {input_tokens} tokens > {input_tokens - 1} maximum"
    )
    assert message(http, "claude-sonnet-4-5", max_tokens=10_000).status_code == 200
    assert mock.stats().context_length_exceeded == 2


# --- capacity -----------------------------------------------------------------------


async def test_latency_stretches_with_load_beyond_capacity(mock: MockUpstream) -> None:
    mock.set_config(MockConfig(capacity=2))
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    async with httpx.AsyncClient(base_url=mock.url, timeout=5) as client:
        alone = await client.post("/chat/completions", json=body)
        assert alone.headers["x-mock-stretch"] == "1"
        hang = {"x-mock-fault": "hang"}
        hung = [
            asyncio.create_task(client.post("/chat/completions", json=body, headers=hang))
            for _ in range(3)
        ]
        try:
            deadline = time.monotonic() + 5
            while mock.stats().in_flight < 3:
                assert time.monotonic() < deadline, mock.stats()
                await asyncio.sleep(0.01)
            started = time.monotonic()
            r = await client.post("/chat/completions", json=body, headers={"x-mock-ttft-ms": "100"})
            elapsed = time.monotonic() - started
        finally:
            for task in hung:
                task.cancel()
            await asyncio.gather(*hung, return_exceptions=True)
    assert r.status_code == 200
    assert r.headers["x-mock-stretch"] == "2"  # 4 in flight / capacity 2
    assert elapsed >= 0.2
    stats = mock.stats()
    assert (stats.stretched, stats.peak_in_flight) == (1, 4)


def test_no_stretch_header_without_capacity(http: httpx.Client) -> None:
    assert "x-mock-stretch" not in chat(http).headers


# --- per-model faults ---------------------------------------------------------------


def test_model_faults_fail_one_model_only(mock: MockUpstream, http: httpx.Client) -> None:
    mock.set_config(
        MockConfig(
            faults={"503": 1.0},
            model_faults={
                "gpt-4o": {"500": 1.0},
                "gpt-4o-mini": {},
                "claude-haiku-4-5": {"429": 1},
            },
        )
    )
    assert chat(http, "gpt-4o").status_code == 500
    assert chat(http, "gpt-4o-mini").status_code == 200  # its own (empty) table
    assert chat(http, "gpt-4.1").status_code == 503  # not listed: the global table
    assert message(http).status_code == 429
    assert chat(http, "gpt-4o-mini", headers={"x-mock-fault": "500"}).status_code == 500
    assert mock.stats().faults_injected == 4


# --- /mock/config -------------------------------------------------------------------


def test_mock_config_get_and_partial_post(mock: MockUpstream, http: httpx.Client) -> None:
    mock.set_config(MockConfig(completion_tokens=5, rate_limit_rpm=50))
    got = http.get("/mock/config")
    assert got.status_code == 200
    assert MockConfig.from_json(got.content) == mock.config
    r = http.post("/mock/config", json={"faults": {"503": 1.0}, "context_window": 1000})
    assert r.status_code == 200
    config = MockConfig.from_json(r.content)
    assert config == mock.config
    assert (config.completion_tokens, config.rate_limit_rpm) == (5, 50)  # kept
    assert (dict(config.faults), config.context_window) == ({"503": 1.0}, 1000)
    assert chat(http).status_code == 503
    http.post("/mock/config", json={"faults": {}})  # heal
    assert chat(http).json()["usage"]["completion_tokens"] == 5


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1]", "expected an object"),
        (b'{"capacity": 0}', "MockConfig.capacity"),
        (b'{"model_faults": {"gpt-4o": {"boom": 1}}}', "MockConfig.model_faults['gpt-4o']"),
        (b'{"ttft": 5}', "latency"),
        (b'{"rpm": 5}', "unknown keys"),
    ],
)
def test_mock_config_post_rejects_bad_documents(
    mock: MockUpstream, http: httpx.Client, body: bytes, expected: str
) -> None:
    before = mock.config
    r = http.post("/mock/config", content=body)
    assert r.status_code == 400
    assert expected in r.json()["error"]["message"]
    assert mock.config is before
