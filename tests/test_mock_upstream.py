"""The mock upstream over real sockets: OpenAI SDK, raw httpx, Anthropic shapes,
faults, latency and stats."""

from __future__ import annotations

import base64
import json
import math
import random
import socket
import time
from array import array
from collections.abc import Iterator
from typing import Any

import bpe_openai  # type: ignore[import-untyped]
import httpx
import openai
import pytest
from openai.types.chat import (
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)

from hotpath import ConfigError
from hotpath.providers.mock import Latency, MockConfig, MockStats, MockUpstream

SYSTEM, USER = "You are terse.", "Name a color."
CHAT: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": USER},
]
WEATHER_TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "days": {"type": "integer", "minimum": 1, "maximum": 7},
                    "unit": {"type": "string", "enum": ["c", "f"]},
                },
                "required": ["city", "days"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {
                "type": "object",
                "properties": {"zone": {"type": "string"}},
                "required": ["zone"],
            },
        },
    },
]


@pytest.fixture(scope="module")
def server() -> Iterator[MockUpstream]:
    with MockUpstream() as mock:
        yield mock


@pytest.fixture(autouse=True)
def mock(server: MockUpstream) -> MockUpstream:
    """The shared server with default behaviour and zeroed counters."""
    server.set_config(MockConfig())
    server.reset()
    return server


@pytest.fixture(scope="module")
def http(server: MockUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as client:
        yield client


@pytest.fixture(scope="module")
def client(server: MockUpstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.url, api_key="x", max_retries=0) as sdk:
        yield sdk


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": CHAT, **extra}


def sse_data(text: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, checking the framing on the way."""
    events = text.split("\n\n")
    assert events[-1] == ""
    out = []
    for event in events[:-1]:
        assert event.startswith("data: "), event
        out.append(event[len("data: ") :])
    return out


# --- OpenAI chat completions ---------------------------------------------------


def test_chat_usage_follows_openai_accounting(client: openai.OpenAI) -> None:
    enc = bpe_openai.get_encoding("o200k_base")
    expected_prompt = 3 + sum(
        3 + len(enc.encode(role)) + len(enc.encode(content))
        for role, content in [("system", SYSTEM), ("user", USER)]
    )
    r = client.chat.completions.create(model="gpt-4o-mini", messages=CHAT)
    assert r.id.startswith("chatcmpl-")
    assert r.object == "chat.completion"
    assert r.model == "gpt-4o-mini"
    assert r.system_fingerprint
    choice = r.choices[0]
    assert (choice.index, choice.finish_reason, choice.message.role) == (0, "stop", "assistant")
    content = choice.message.content
    assert content
    assert r.usage is not None
    assert r.usage.prompt_tokens == expected_prompt
    assert r.usage.completion_tokens == 16 == len(enc.encode(content))
    assert r.usage.total_tokens == expected_prompt + 16


def test_cl100k_models_count_with_cl100k(http: httpx.Client) -> None:
    enc = bpe_openai.get_encoding("cl100k_base")
    r = http.post("/chat/completions", json=chat_body(model="gpt-4")).json()
    assert r["usage"]["completion_tokens"] == len(enc.encode(r["choices"][0]["message"]["content"]))


async def test_stream_has_one_chunk_per_token_and_usage_last(mock: MockUpstream) -> None:
    async with openai.AsyncOpenAI(base_url=mock.url, api_key="x") as sdk:
        stream = await sdk.chat.completions.create(
            model="gpt-4o-mini",
            messages=CHAT,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        whole = await sdk.chat.completions.create(model="gpt-4o-mini", messages=CHAT)
    first, usage_chunk = chunks[0], chunks[-1]
    assert first.object == "chat.completion.chunk"
    assert first.choices[0].delta.role == "assistant"
    assert first.choices[0].delta.content == ""
    content = [c.choices[0].delta.content for c in chunks[1:-2]]
    assert all(content)
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == len(content) == 16
    assert "".join(c for c in content if c) == whole.choices[0].message.content
    assert len({c.id for c in chunks}) == 1
    assert mock.stats().stream_requests == 1


def test_raw_stream_framing_and_done(http: httpx.Client) -> None:
    r = http.post("/chat/completions", json=chat_body(stream=True))
    assert r.headers["content-type"].startswith("text/event-stream")
    data = sse_data(r.text)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all("usage" not in c for c in chunks)  # only with include_usage
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }


def test_tool_call_arguments_respect_integer_bounds(client: openai.OpenAI) -> None:
    """With minimum == maximum the only valid value is forced, whatever the seed."""
    pinned = {"type": "integer", "minimum": 5, "maximum": 5}
    tool: ChatCompletionToolParam = {
        "type": "function",
        "function": {
            "name": "pick",
            "parameters": {
                "type": "object",
                "properties": {"n": pinned},
                "required": ["n"],
            },
        },
    }
    for text in ("one", "two", "three"):
        r = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": text}], tools=[tool]
        )
        calls = r.choices[0].message.tool_calls
        assert calls is not None
        call = calls[0]
        assert isinstance(call, ChatCompletionMessageFunctionToolCall)
        assert json.loads(call.function.arguments) == {"n": 5}


def test_tool_call_fills_required_arguments(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=CHAT,
        tools=WEATHER_TOOLS,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.id.startswith("call_")
    assert call.type == "function"
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert set(args) == {"city", "days"}
    assert isinstance(args["city"], str)
    assert isinstance(args["days"], int)
    assert args["days"] in range(1, 8)  # the schema's minimum..maximum
    assert r.usage is not None
    enc = bpe_openai.get_encoding("o200k_base")
    assert r.usage.completion_tokens == len(enc.encode(call.function.arguments))


def test_tool_choice_names_the_tool_or_disables_tools(http: httpx.Client) -> None:
    named = {"type": "function", "function": {"name": "get_time"}}
    r = http.post("/chat/completions", json=chat_body(tools=WEATHER_TOOLS, tool_choice=named))
    call = r.json()["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_time"
    assert list(json.loads(call["function"]["arguments"])) == ["zone"]
    r = http.post("/chat/completions", json=chat_body(tools=WEATHER_TOOLS, tool_choice="none"))
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert "tool_calls" not in choice["message"]
    unknown = {"type": "function", "function": {"name": "nope"}}
    r = http.post("/chat/completions", json=chat_body(tools=WEATHER_TOOLS, tool_choice=unknown))
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "tool_choice"


def test_streamed_tool_call_matches_the_whole_one(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=CHAT,
        tools=WEATHER_TOOLS,
    )
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=CHAT,
        tools=WEATHER_TOOLS,
        stream=True,
    )
    chunks = list(stream)
    head = chunks[0].choices[0].delta
    assert head.role == "assistant"
    assert head.tool_calls is not None
    first = head.tool_calls[0]
    assert first.index == 0
    assert first.type == "function"
    assert first.function is not None
    assert (first.function.name, first.function.arguments) == ("get_weather", "")
    fragments = []
    for chunk in chunks[1:-1]:
        calls = chunk.choices[0].delta.tool_calls
        assert calls is not None
        assert calls[0].id is None
        assert calls[0].function is not None
        fragments.append(calls[0].function.arguments or "")
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert whole.choices[0].message.tool_calls is not None
    expected = whole.choices[0].message.tool_calls[0]
    assert isinstance(expected, ChatCompletionMessageFunctionToolCall)
    assert first.id == expected.id
    assert "".join(fragments) == expected.function.arguments


def test_n_gives_distinct_choices_and_summed_usage(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, n=2)
    assert [c.index for c in r.choices] == [0, 1]
    assert r.choices[0].message.content != r.choices[1].message.content
    assert r.usage is not None
    assert r.usage.completion_tokens == 32


def test_n_streams_interleave_by_index(http: httpx.Client) -> None:
    r = http.post("/chat/completions", json=chat_body(n=2, stream=True))
    chunks = [json.loads(d) for d in sse_data(r.text)[:-1]]
    text: dict[int, str] = {0: "", 1: ""}
    for chunk in chunks:
        (choice,) = chunk["choices"]
        text[choice["index"]] += choice["delta"].get("content") or ""
    whole = http.post("/chat/completions", json=chat_body(n=2)).json()
    assert [c["message"]["content"] for c in whole["choices"]] == [text[0], text[1]]


def test_max_tokens_cuts_with_finish_length(http: httpx.Client) -> None:
    full = http.post("/chat/completions", json=chat_body()).json()
    for param in ("max_tokens", "max_completion_tokens"):
        cut = http.post("/chat/completions", json=chat_body(**{param: 5})).json()
        assert cut["choices"][0]["finish_reason"] == "length"
        assert cut["usage"]["completion_tokens"] == 5
        text = cut["choices"][0]["message"]["content"]
        assert full["choices"][0]["message"]["content"].startswith(text)
    roomy = http.post("/chat/completions", json=chat_body(max_tokens=100)).json()
    assert roomy["choices"][0]["finish_reason"] == "stop"
    assert roomy["usage"]["completion_tokens"] == 16


def test_stop_sequence_ends_the_answer_early(http: httpx.Client) -> None:
    full = http.post("/chat/completions", json=chat_body()).json()["choices"][0]["message"]
    word = full["content"].split()[3]
    r = http.post("/chat/completions", json=chat_body(stop=[" " + word])).json()
    assert r["choices"][0]["finish_reason"] == "stop"
    assert r["choices"][0]["message"]["content"] == full["content"].split(" " + word)[0]
    assert r["usage"]["completion_tokens"] == 3


def test_logprobs_have_one_entry_per_token(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=CHAT,
        logprobs=True,
        top_logprobs=3,
    )
    logprobs = r.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.content is not None
    assert len(logprobs.content) == 16
    assert "".join(t.token for t in logprobs.content) == r.choices[0].message.content
    for entry in logprobs.content:
        assert entry.logprob <= 0
        assert len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].token == entry.token
        assert entry.bytes == list(entry.token.encode())


def test_json_response_formats_give_json_objects(http: httpx.Client) -> None:
    r = http.post("/chat/completions", json=chat_body(response_format={"type": "json_object"}))
    assert isinstance(json.loads(r.json()["choices"][0]["message"]["content"]), dict)
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "ok": {"type": "boolean"}},
        "required": ["name", "ok"],
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    r = http.post("/chat/completions", json=chat_body(response_format=fmt))
    value = json.loads(r.json()["choices"][0]["message"]["content"])
    assert isinstance(value["name"], str)
    assert isinstance(value["ok"], bool)


def test_same_request_same_answer_different_request_different(http: httpx.Client) -> None:
    def content(**extra: Any) -> str:
        r = http.post("/chat/completions", json=chat_body(**extra)).json()
        return str(r["choices"][0]["message"]["content"])

    assert content() == content()
    assert content(seed=1) == content(seed=1)
    other = [{"role": "user", "content": "Name a number."}]
    assert len({content(), content(seed=1), content(messages=other), content(model="gpt-4o")}) == 4


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": CHAT}, "model"),
        ({"model": "gpt-4o"}, "messages"),
        ({"model": "gpt-4o", "messages": []}, "messages"),
        ({"model": "gpt-4o", "messages": CHAT, "n": 0}, "n"),
    ],
)
def test_invalid_requests_get_openai_400s(http: httpx.Client, body: Any, param: str) -> None:
    r = http.post("/chat/completions", json=body)
    assert r.status_code == 400
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"]) == ("invalid_request_error", param)


def test_invalid_json_unknown_path_and_wrong_method(http: httpx.Client) -> None:
    r = http.post("/chat/completions", content=b"{nope")
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    r = http.post("/nowhere", json={})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "unknown_url"
    assert http.get("/chat/completions").status_code == 405


def test_models_lists_mock_models(client: openai.OpenAI) -> None:
    models = list(client.models.list())
    assert "gpt-4o-mini" in {m.id for m in models}
    assert {m.owned_by for m in models} == {"hotpath-mock"}


# --- embeddings ------------------------------------------------------------------


def test_embeddings_float_batch_is_unit_and_deterministic(mock: MockUpstream) -> None:
    with openai.OpenAI(base_url=mock.url, api_key="x") as sdk:
        texts = ["alpha", "beta", "alpha"]
        r = sdk.embeddings.create(
            model="text-embedding-3-small", input=texts, encoding_format="float"
        )
        again = sdk.embeddings.create(model="text-embedding-3-small", input="beta", dimensions=64)
    vectors = [d.embedding for d in r.data]
    assert [d.index for d in r.data] == [0, 1, 2]
    assert all(len(v) == 1536 for v in vectors)
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0, abs_tol=1e-5) for v in vectors)
    assert vectors[0] == vectors[2]
    assert vectors[0] != vectors[1]
    assert abs(sum(a * b for a, b in zip(vectors[0], vectors[1], strict=True))) < 0.2
    assert len(again.data[0].embedding) == 64
    enc = bpe_openai.get_encoding("cl100k_base")
    assert r.usage.prompt_tokens == sum(len(enc.encode(t)) for t in texts)
    stats = mock.stats()
    assert (stats.embedding_requests, stats.embedding_inputs) == (2, 4)


def test_embeddings_base64_is_little_endian_float32(http: httpx.Client) -> None:
    body = {"model": "text-embedding-3-small", "input": ["x", "y"], "dimensions": 8}
    floats = http.post("/embeddings", json=body).json()["data"]
    b64 = http.post("/embeddings", json={**body, "encoding_format": "base64"}).json()["data"]
    for as_float, as_b64 in zip(floats, b64, strict=True):
        decoded = array("f", base64.b64decode(as_b64["embedding"]))
        assert decoded.tolist() == as_float["embedding"]


def test_embeddings_of_token_arrays(mock: MockUpstream, http: httpx.Client) -> None:
    r = http.post("/embeddings", json={"model": "m", "input": [[1, 2, 3], [4]]}).json()
    assert r["object"] == "list"
    assert len(r["data"]) == 2
    assert r["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    one = http.post("/embeddings", json={"model": "m", "input": [1, 2, 3]}).json()
    assert one["data"][0]["embedding"] == r["data"][0]["embedding"]
    assert http.post("/embeddings", json={"model": "m", "input": []}).status_code == 400
    assert mock.stats().embedding_inputs == 3


# --- faults ------------------------------------------------------------------------


def test_429_carries_retry_after(mock: MockUpstream, http: httpx.Client) -> None:
    r = http.post("/chat/completions", json=chat_body(), headers={"x-mock-fault": "429"})
    assert r.status_code == 429
    assert r.headers["retry-after"] == "1"
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    headers = {"x-mock-fault": "429", "x-mock-retry-after": "2.5"}
    r = http.post("/chat/completions", json=chat_body(), headers=headers)
    assert r.headers["retry-after"] == "2.5"
    assert r.headers["retry-after-ms"] == "2500"
    assert mock.stats().faults_injected == 2


def test_openai_sdk_sees_rate_limit_error(mock: MockUpstream) -> None:
    mock.set_config(MockConfig(faults={"429": 1.0}, retry_after=0.01))
    with (
        openai.OpenAI(base_url=mock.url, api_key="x", max_retries=1) as sdk,
        pytest.raises(openai.RateLimitError),
    ):
        sdk.chat.completions.create(model="gpt-4o-mini", messages=CHAT)
    assert mock.stats().chat_requests == 2  # the SDK retried once


@pytest.mark.parametrize("status", ["500", "503"])
def test_server_errors(http: httpx.Client, status: str) -> None:
    r = http.post("/chat/completions", json=chat_body(), headers={"x-mock-fault": status})
    assert r.status_code == int(status)
    assert r.json()["error"]["type"] == "server_error"


@pytest.mark.parametrize("stream", [True, False])
def test_cut_breaks_the_response(mock: MockUpstream, http: httpx.Client, stream: bool) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        http.post(
            "/chat/completions", json=chat_body(stream=stream), headers={"x-mock-fault": "cut"}
        )
    assert mock.stats().faults_injected == 1


def test_cut_stream_sends_part_of_the_chunks(mock: MockUpstream) -> None:
    with socket.create_connection(("127.0.0.1", mock.port), timeout=5) as sock:
        body = json.dumps(chat_body(stream=True)).encode()
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-mock-fault: cut\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 200")
    assert b"chat.completion.chunk" in received
    assert b"[DONE]" not in received
    assert not received.endswith(b"0\r\n\r\n")


def test_hang_until_client_gives_up_counts_cancelled(
    mock: MockUpstream, http: httpx.Client
) -> None:
    with pytest.raises(httpx.ReadTimeout):
        http.post(
            "/chat/completions", json=chat_body(), headers={"x-mock-fault": "hang"}, timeout=0.2
        )
    stats = mock.wait_for(lambda s: s.cancelled == 1 and s.in_flight == 0)
    assert stats.faults_injected == 1


def test_content_filter_shortens_and_flags(http: httpx.Client) -> None:
    r = http.post("/chat/completions", json=chat_body(), headers={"x-mock-fault": "content_filter"})
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert r.json()["usage"]["completion_tokens"] == 8


def test_configured_faults_follow_the_seeded_rng(mock: MockUpstream, http: httpx.Client) -> None:
    mock.set_config(MockConfig(faults={"500": 0.3, "503": 0.2}, seed=7))
    statuses = [http.post("/chat/completions", json=chat_body()).status_code for _ in range(30)]
    rng = random.Random(7)
    expected = []
    for _ in range(30):
        draw = rng.random()
        expected.append(500 if draw < 0.3 else 503 if draw < 0.5 else 200)
    assert statuses == expected
    assert mock.stats().faults_injected == sum(s != 200 for s in expected)


def test_bad_override_header_is_a_400(http: httpx.Client) -> None:
    for name, value in [("x-mock-fault", "boom"), ("x-mock-ttft-ms", "-1"), ("x-mock-tps", "0")]:
        r = http.post("/chat/completions", json=chat_body(), headers={name: value})
        assert r.status_code == 400
        assert name in r.json()["error"]["message"]


def test_api_key_is_enforced_per_provider_shape(mock: MockUpstream, http: httpx.Client) -> None:
    mock.set_config(MockConfig(api_key="sk-test"))
    r = http.post("/chat/completions", json=chat_body())
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_api_key"
    ok = http.post(
        "/chat/completions", json=chat_body(), headers={"authorization": "Bearer sk-test"}
    )
    assert ok.status_code == 200
    body = {"model": "claude-x", "max_tokens": 8, "messages": CHAT[1:]}
    r = http.post("/messages", json=body, headers={"x-api-key": "wrong"})
    assert r.status_code == 401
    assert r.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    }
    assert http.post("/messages", json=body, headers={"x-api-key": "sk-test"}).status_code == 200


# --- latency ----------------------------------------------------------------------


def test_ttft_delays_the_answer(mock: MockUpstream, http: httpx.Client) -> None:
    mock.set_config(MockConfig(ttft=Latency.parse("200ms")))
    start = time.perf_counter()
    http.post("/chat/completions", json=chat_body())
    assert time.perf_counter() - start >= 0.2
    start = time.perf_counter()
    http.post("/chat/completions", json=chat_body(), headers={"x-mock-ttft-ms": "0"})
    assert time.perf_counter() - start < 0.2


def test_tps_spaces_stream_chunks(http: httpx.Client) -> None:
    headers = {"x-mock-tps": "100", "x-mock-ttft-ms": "50"}
    arrivals = []
    start = time.perf_counter()
    with http.stream(
        "POST", "/chat/completions", json=chat_body(stream=True), headers=headers
    ) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.perf_counter() - start)
    assert arrivals[0] >= 0.05
    assert arrivals[-1] >= 0.05 + 15 / 100  # 16 tokens, the first at ttft


def test_tps_lengthens_non_streaming_answers(http: httpx.Client) -> None:
    start = time.perf_counter()
    http.post("/chat/completions", json=chat_body(max_tokens=10), headers={"x-mock-tps": "100"})
    assert time.perf_counter() - start >= 0.1


def test_nagle_does_not_stall_keep_alive(http: httpx.Client) -> None:
    """Nagle + delayed ACK would cost ~40 ms per request on a kept-alive connection."""
    http.post("/chat/completions", json=chat_body())
    start = time.perf_counter()
    for _ in range(20):
        http.post("/chat/completions", json=chat_body())
    assert time.perf_counter() - start < 0.5


# --- Anthropic ---------------------------------------------------------------------


def anthropic_body(**extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": USER}],
        **extra,
    }


def test_anthropic_message(mock: MockUpstream, http: httpx.Client) -> None:
    r = http.post("/messages", json=anthropic_body()).json()
    assert r["id"].startswith("msg_")
    assert (r["type"], r["role"], r["model"]) == ("message", "assistant", "claude-sonnet-4-5")
    (block,) = r["content"]
    assert block["type"] == "text"
    assert block["text"]
    assert (r["stop_reason"], r["stop_sequence"]) == ("end_turn", None)
    assert r["usage"]["output_tokens"] == 16
    assert r["usage"]["input_tokens"] > 0
    short = http.post("/messages", json=anthropic_body(max_tokens=3)).json()
    assert (short["stop_reason"], short["usage"]["output_tokens"]) == ("max_tokens", 3)
    assert mock.stats().anthropic_requests == 2


def parse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.split("\n\n")[:-1]:
        name, data = block.split("\n")
        assert name.startswith("event: ")
        assert data.startswith("data: ")
        payload = json.loads(data[len("data: ") :])
        assert payload["type"] == name[len("event: ") :]
        events.append((payload["type"], payload))
    return events


def test_anthropic_stream_event_sequence(http: httpx.Client) -> None:
    whole = http.post("/messages", json=anthropic_body()).json()
    events = parse_events(http.post("/messages", json=anthropic_body(stream=True)).text)
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 16,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    text = "".join(p["delta"]["text"] for n, p in events if n == "content_block_delta")
    assert text == whole["content"][0]["text"]
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"] == {"output_tokens": 16}


def test_anthropic_tool_use(http: httpx.Client) -> None:
    tools = [
        {
            "name": "lookup",
            "description": "Look something up.",
            "input_schema": {
                "type": "object",
                "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
                "required": ["query"],
            },
        }
    ]
    r = http.post("/messages", json=anthropic_body(tools=tools)).json()
    (block,) = r["content"]
    assert block["type"] == "tool_use"
    assert block["id"].startswith("toolu_")
    assert block["name"] == "lookup"
    assert list(block["input"]) == ["query"]
    assert r["stop_reason"] == "tool_use"
    events = parse_events(
        http.post("/messages", json=anthropic_body(tools=tools, stream=True)).text
    )
    assert events[1][1]["content_block"] == {**block, "input": {}}
    partial = "".join(
        p["delta"]["partial_json"]
        for n, p in events
        if n == "content_block_delta" and p["delta"]["type"] == "input_json_delta"
    )
    assert json.loads(partial) == block["input"]
    none = http.post("/messages", json=anthropic_body(tools=tools, tool_choice={"type": "none"}))
    assert none.json()["content"][0]["type"] == "text"


@pytest.mark.parametrize(
    ("fault", "status", "kind"),
    [("429", 429, "rate_limit_error"), ("500", 500, "api_error"), ("503", 503, "overloaded_error")],
)
def test_anthropic_faults_use_its_error_shape(
    http: httpx.Client, fault: str, status: int, kind: str
) -> None:
    r = http.post("/messages", json=anthropic_body(), headers={"x-mock-fault": fault})
    assert r.status_code == status
    assert r.json()["type"] == "error"
    assert r.json()["error"]["type"] == kind


def test_anthropic_validation(http: httpx.Client) -> None:
    body = anthropic_body()
    del body["max_tokens"]
    r = http.post("/messages", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in r.json()["error"]["message"]


# --- control, recording, lifecycle --------------------------------------------------


def test_stats_and_reset_endpoints(mock: MockUpstream, http: httpx.Client) -> None:
    http.post("/chat/completions", json=chat_body())
    origin = httpx.URL(mock.origin)
    stats = http.get(origin.join("/mock/stats")).json()
    assert MockStats(**stats) == mock.stats()
    assert stats["chat_requests"] == 1
    assert http.post(origin.join("/mock/reset")).json()["chat_requests"] == 0
    assert mock.stats().chat_requests == 0
    assert not mock.requests


def test_requests_are_recorded_with_lowercased_headers(
    mock: MockUpstream, http: httpx.Client
) -> None:
    http.post("/chat/completions", json=chat_body(), headers={"X-Trace-Id": "abc"})
    (recorded,) = mock.requests
    assert recorded.path == "/v1/chat/completions"
    assert recorded.headers["x-trace-id"] == "abc"
    assert recorded.body == chat_body()


async def test_in_loop_server() -> None:
    async with MockUpstream() as mock, httpx.AsyncClient() as client:
        assert mock.port != 0
        r = await client.post(f"{mock.url}/chat/completions", json=chat_body())
        assert r.json()["usage"]["completion_tokens"] == 16
    assert "stopped" in repr(mock)


def test_stop_ends_hung_requests_promptly() -> None:
    mock = MockUpstream(MockConfig(faults={"hang": 1.0})).start_in_thread()
    try:
        sock = socket.create_connection(("127.0.0.1", mock.port), timeout=5)
        body = json.dumps(chat_body()).encode()
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        mock.wait_for(lambda s: s.in_flight == 1)
    finally:
        start = time.perf_counter()
        mock.stop()
    assert time.perf_counter() - start < 1.0
    with sock:
        assert sock.recv(1024) == b""
    assert mock.stats().in_flight == 0


def test_faults_apply_to_embeddings_except_content_filter(
    mock: MockUpstream, http: httpx.Client
) -> None:
    body = {"model": "m", "input": "x"}
    r = http.post("/embeddings", json=body, headers={"x-mock-fault": "503"})
    assert r.status_code == 503
    r = http.post("/embeddings", json=body, headers={"x-mock-fault": "content_filter"})
    assert r.status_code == 200
    assert mock.stats().faults_injected == 1


def test_recording_is_bounded_and_ports_are_validated() -> None:
    with MockUpstream(max_recorded=2).running() as mock, httpx.Client(base_url=mock.url) as http:
        for i in range(3):
            http.post("/chat/completions", json=chat_body(seed=i))
        assert [r.body["seed"] for r in mock.requests] == [1, 2]
    with pytest.raises(ConfigError, match="port"):
        MockUpstream(port=70000)


def test_usage_can_be_omitted_like_a_server_that_reports_none() -> None:
    with MockUpstream(MockConfig(completion_tokens=4)) as upstream:
        omit = {"x-mock-usage": "omit"}
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        whole = httpx.post(f"{upstream.url}/chat/completions", json=body, headers=omit)
        streamed = httpx.post(
            f"{upstream.url}/chat/completions",
            json={**body, "stream": True, "stream_options": {"include_usage": True}},
            headers=omit,
        )
    assert whole.status_code == 200
    assert "usage" not in whole.json()
    assert whole.json()["choices"][0]["message"]["content"]
    assert streamed.status_code == 200
    assert '"usage":{' not in streamed.text
    assert streamed.text.rstrip().endswith("data: [DONE]")
