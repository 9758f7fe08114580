"""Chat completions through the gateway with the official openai SDK, over real sockets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway_support import chat_body, gateway_config, gateway_of, running_gateway, sdk, unique
from hotpath._background import BackgroundServer
from hotpath.cache import MemoryTier
from hotpath.gateway import ModelRoute
from hotpath.providers.mock import MockConfig, MockUpstream


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream(MockConfig(completion_tokens=12)) as upstream:
        yield upstream


@pytest.fixture
def gateway(mock: MockUpstream) -> Iterator[BackgroundServer]:
    with running_gateway(gateway_config(mock.url)) as server:
        yield server


def memory_tier(server: BackgroundServer) -> MemoryTier:
    cache = gateway_of(server).cache
    assert cache is not None
    tier = cache.tiers[0]
    assert isinstance(tier, MemoryTier)
    return tier


def async_sdk(server: BackgroundServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.base}/v1", api_key="unused", max_retries=0)


def sse_payloads(text: str) -> list[Any]:
    events = [e for e in text.split("\n\n") if e.strip()]
    assert all(e.startswith("data: ") for e in events), events
    return [e[6:] if e[6:] == "[DONE]" else json.loads(e[6:]) for e in events]


def test_second_identical_request_is_a_cache_hit_with_the_same_answer(
    gateway: BackgroundServer, mock: MockUpstream
) -> None:
    client = sdk(gateway)
    body = chat_body(unique())
    before = mock.stats().chat_requests
    first = client.chat.completions.with_raw_response.create(**body)
    second = client.chat.completions.with_raw_response.create(**body)
    assert first.headers["x-hotpath-cache"] == "miss"
    assert second.headers["x-hotpath-cache"] == "hit"
    assert second.headers["x-hotpath-cache-tier"] == "memory"
    assert second.headers["x-hotpath-cache-key"] == first.headers["x-hotpath-cache-key"]
    assert second.parse().model_dump() == first.parse().model_dump()
    assert mock.stats().chat_requests - before == 1


def test_fields_that_do_not_change_the_answer_share_an_entry(gateway: BackgroundServer) -> None:
    client = sdk(gateway)
    text = unique()
    client.chat.completions.create(**chat_body(text))
    again = client.chat.completions.with_raw_response.create(**chat_body(text), user="someone")
    assert again.headers["x-hotpath-cache"] == "hit"
    other = client.chat.completions.with_raw_response.create(**chat_body(text), temperature=0.3)
    assert other.headers["x-hotpath-cache"] == "miss"


async def test_streaming_relays_chunks_and_a_replay_is_chunk_for_chunk(
    gateway: BackgroundServer, mock: MockUpstream
) -> None:
    client = async_sdk(gateway)
    body = chat_body(unique())
    before = mock.stats().chat_requests
    first = [
        c.model_dump() async for c in await client.chat.completions.create(**body, stream=True)
    ]
    second = [
        c.model_dump() async for c in await client.chat.completions.create(**body, stream=True)
    ]
    await client.close()
    assert len(first) >= 12  # role chunk, one per token, finish chunk
    assert first == second
    assert mock.stats().chat_requests - before == 1
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in first if c["choices"])
    assert len(text.split()) == 12


def test_streamed_replay_is_valid_sse_ending_in_done(gateway: BackgroundServer) -> None:
    body = chat_body(unique(), stream=True)
    with httpx.Client(base_url=gateway.base) as http:
        miss = http.post("/v1/chat/completions", json=body)
        hit = http.post("/v1/chat/completions", json=body)
    assert hit.headers["x-hotpath-cache"] == "hit"
    assert hit.headers["content-type"].startswith("text/event-stream")
    assert sse_payloads(hit.text) == sse_payloads(miss.text)
    assert sse_payloads(hit.text)[-1] == "[DONE]"


def test_usage_chunk_only_for_clients_that_ask(gateway: BackgroundServer) -> None:
    client = sdk(gateway)
    body = chat_body(unique())
    plain = list(client.chat.completions.create(**body, stream=True))
    assert all(c.usage is None for c in plain)
    with_usage = list(
        client.chat.completions.create(**body, stream=True, stream_options={"include_usage": True})
    )
    assert with_usage[-1].choices == []
    assert with_usage[-1].usage is not None
    assert with_usage[-1].usage.completion_tokens == 12


def test_whole_answer_from_a_cached_stream_and_stream_from_a_cached_whole(
    gateway: BackgroundServer, mock: MockUpstream
) -> None:
    client = sdk(gateway)
    streamed_body = chat_body(unique())
    chunks = list(client.chat.completions.create(**streamed_body, stream=True))
    streamed_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    whole = client.chat.completions.with_raw_response.create(**streamed_body)
    assert whole.headers["x-hotpath-cache"] == "hit"
    assert whole.parse().choices[0].message.content == streamed_text
    assert whole.parse().usage is not None

    whole_body = chat_body(unique())
    answer = client.chat.completions.create(**whole_body)
    before = mock.stats().chat_requests
    replay = list(
        client.chat.completions.create(
            **whole_body, stream=True, stream_options={"include_usage": True}
        )
    )
    assert mock.stats().chat_requests == before
    replay_text = "".join(c.choices[0].delta.content or "" for c in replay if c.choices)
    assert replay_text == answer.choices[0].message.content
    assert replay[-1].usage is not None
    assert answer.usage is not None
    assert replay[-1].usage.total_tokens == answer.usage.total_tokens


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_pass_through_and_replay(gateway: BackgroundServer, stream: bool) -> None:
    client = sdk(gateway)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    body = chat_body(unique("weather in Paris?"), tools=tools)
    for _ in range(2):  # miss, then hit
        if stream:
            chunks = list(client.chat.completions.create(**body, stream=True))
            calls = [t for c in chunks if c.choices for t in (c.choices[0].delta.tool_calls or [])]
            assert calls[0].function is not None
            assert calls[0].function.name == "get_weather"
            arguments = "".join(t.function.arguments or "" for t in calls if t.function)
            finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
        else:
            answer = client.chat.completions.create(**body)
            message = answer.choices[0].message
            assert message.tool_calls is not None
            call = message.tool_calls[0]
            assert call.type == "function"
            assert call.function.name == "get_weather"
            arguments = call.function.arguments
            finish = answer.choices[0].finish_reason
        assert "city" in json.loads(arguments)
        assert finish == "tool_calls"


def test_unknown_and_openai_fields_reach_the_upstream_untouched(
    gateway: BackgroundServer, mock: MockUpstream
) -> None:
    body = chat_body(
        unique(),
        seed=7,
        n=2,
        logprobs=True,
        top_logprobs=2,
        response_format={"type": "json_object"},
        x_vendor_extension={"keep": [1, 2.5, "me"]},
    )
    with httpx.Client(base_url=gateway.base) as http:
        answer = http.post("/v1/chat/completions", json=body).json()
    sent = next(r for r in reversed(mock.requests) if r.path.endswith("/chat/completions"))
    assert sent.body == body
    assert len(answer["choices"]) == 2
    assert answer["choices"][0]["logprobs"] is not None
    json.loads(answer["choices"][0]["message"]["content"])


def test_cache_control_no_cache_skips_lookup_but_stores(
    gateway: BackgroundServer, mock: MockUpstream
) -> None:
    body = chat_body(unique())
    with httpx.Client(base_url=gateway.base) as http:
        http.post("/v1/chat/completions", json=body)
        before = mock.stats().chat_requests
        fresh = http.post("/v1/chat/completions", json=body, headers={"cache-control": "no-cache"})
        assert fresh.headers["x-hotpath-cache"] == "bypass"
        assert mock.stats().chat_requests == before + 1
        assert http.post("/v1/chat/completions", json=body).headers["x-hotpath-cache"] == "hit"


def test_cache_control_no_store_neither_reads_nor_writes(gateway: BackgroundServer) -> None:
    body = chat_body(unique())
    with httpx.Client(base_url=gateway.base) as http:
        first = http.post("/v1/chat/completions", json=body, headers={"cache-control": "no-store"})
        assert first.headers["x-hotpath-cache"] == "bypass"
        assert http.post("/v1/chat/completions", json=body).headers["x-hotpath-cache"] == "miss"


def test_max_age_refuses_older_answers(gateway: BackgroundServer, mock: MockUpstream) -> None:
    body = chat_body(unique())
    with httpx.Client(base_url=gateway.base) as http:
        http.post("/v1/chat/completions", json=body)
        fresh_enough = http.post(
            "/v1/chat/completions", json=body, headers={"cache-control": "max-age=3600"}
        )
        assert fresh_enough.headers["x-hotpath-cache"] == "hit"
        assert int(fresh_enough.headers["age"]) >= 0
        before = mock.stats().chat_requests
        too_old = http.post(
            "/v1/chat/completions", json=body, headers={"cache-control": "max-age=0"}
        )
        # Zero seconds old is still acceptable only if stored this very second; the
        # entry may be younger than a second, so allow either, but never a failure.
        assert too_old.status_code == 200
        assert mock.stats().chat_requests - before in (0, 1)


def test_namespace_header_separates_entries(gateway: BackgroundServer) -> None:
    body = chat_body(unique())
    with httpx.Client(base_url=gateway.base) as http:
        http.post("/v1/chat/completions", json=body)
        other = http.post(
            "/v1/chat/completions", json=body, headers={"x-hotpath-cache-namespace": "agent-2"}
        )
        assert other.headers["x-hotpath-cache"] == "miss"
        again = http.post(
            "/v1/chat/completions", json=body, headers={"x-hotpath-cache-namespace": "agent-2"}
        )
        assert again.headers["x-hotpath-cache"] == "hit"


def test_ttl_header_sets_the_entry_lifetime(gateway: BackgroundServer) -> None:
    body = chat_body(unique())
    with httpx.Client(base_url=gateway.base) as http:
        short = http.post("/v1/chat/completions", json=body, headers={"x-hotpath-cache-ttl": "120"})
        default = http.post("/v1/chat/completions", json=chat_body(unique()))
        bad = http.post("/v1/chat/completions", json=body, headers={"x-hotpath-cache-ttl": "soon"})
    l1 = memory_tier(gateway)
    left = l1.ttl_of(short.headers["x-hotpath-cache-key"])
    assert left is not None
    assert left > 100
    assert left <= 120
    default_left = l1.ttl_of(default.headers["x-hotpath-cache-key"])
    assert default_left is not None
    assert default_left > 3600
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "x-hotpath-cache-ttl"


def test_sampled_requests_bypass_when_the_config_says_so(mock: MockUpstream) -> None:
    with (
        running_gateway(gateway_config(mock.url, cache_cache_sampled=False)) as server,
        httpx.Client(base_url=server.base) as http,
    ):
        sampled = chat_body(unique(), temperature=0.8)
        assert http.post("/v1/chat/completions", json=sampled).headers["x-hotpath-cache"] == (
            "bypass"
        )
        assert http.post("/v1/chat/completions", json=sampled).headers["x-hotpath-cache"] == (
            "bypass"
        )
        greedy = chat_body(unique(), temperature=0)
        http.post("/v1/chat/completions", json=greedy)
        assert http.post("/v1/chat/completions", json=greedy).headers["x-hotpath-cache"] == "hit"


def test_models_health_ready_and_metrics(gateway: BackgroundServer) -> None:
    client = sdk(gateway)
    names = [m.id for m in client.models.list()]
    assert names
    with httpx.Client(base_url=gateway.base) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        ready = http.get("/readyz").json()
        assert ready["status"] == "ready"
        assert ready["tiers"] == [{"tier": "memory", "healthy": True}]
        body = chat_body(unique())
        http.post("/v1/chat/completions", json=body)
        http.post("/v1/chat/completions", json=body)
        text = http.get("/metrics").text
    assert 'hotpath_cache_lookups_total{outcome="hit",route="chat",tier="memory"}' in text
    assert "hotpath_request_duration_seconds_bucket" in text
    assert 'hotpath_upstream_requests_total{outcome="ok",route="chat",upstream="mock"}' in text
    assert "hotpath_in_flight_requests" in text


def test_model_map_sends_the_deployment_name_upstream(mock: MockUpstream) -> None:
    models = {"public-name": ModelRoute(upstream="mock", model="deployment-7")}
    with running_gateway(gateway_config(mock.url, models=models)) as server:
        client = sdk(server)
        answer = client.chat.completions.create(**chat_body(unique(), model="public-name"))
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(**chat_body(unique(), model="deployment-7"))
    sent = next(r for r in reversed(mock.requests) if r.path.endswith("/chat/completions"))
    assert sent.body["model"] == "deployment-7"
    assert answer.choices[0].message.content
