"""An Anthropic upstream behind the OpenAI API: translated both ways, streams included."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from gateway_support import chat_body, gateway_config, running_gateway, sdk, unique
from hotpath._background import BackgroundServer
from hotpath.providers.mock import MockConfig, MockUpstream

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look a word up",
            "parameters": {
                "type": "object",
                "properties": {"word": {"type": "string"}},
                "required": ["word"],
            },
        },
    }
]


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream(MockConfig(completion_tokens=10, api_key="anthropic-key")) as upstream:
        yield upstream


@pytest.fixture
def gateway(mock: MockUpstream) -> Iterator[BackgroundServer]:
    config = gateway_config(mock.url, kind="anthropic", api_key="anthropic-key")
    with running_gateway(config) as server:
        yield server


def test_chat_is_translated_to_messages_and_back(
    gateway: BackgroundServer, mock: MockUpstream
) -> None:
    before = mock.stats().anthropic_requests
    body = chat_body(unique(), model="claude-test")
    body["messages"].insert(0, {"role": "system", "content": "Be brief."})
    answer = sdk(gateway).chat.completions.create(**body)
    assert mock.stats().anthropic_requests - before == 1
    sent = next(r for r in reversed(mock.requests) if r.path.endswith("/messages"))
    assert sent.body["system"] == "Be brief."
    assert sent.body["model"] == "claude-test"
    assert sent.headers["x-api-key"] == "anthropic-key"
    assert answer.object == "chat.completion"
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert len((answer.choices[0].message.content or "").split()) == 10
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 10


def test_streams_are_translated_and_cached(gateway: BackgroundServer, mock: MockUpstream) -> None:
    client = sdk(gateway)
    body = chat_body(unique(), model="claude-test")
    chunks = list(
        client.chat.completions.create(**body, stream=True, stream_options={"include_usage": True})
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 10
    assert chunks[-1].usage is not None
    before = mock.stats().anthropic_requests
    whole = client.chat.completions.with_raw_response.create(**body)
    assert whole.headers["x-hotpath-cache"] == "hit"
    assert whole.parse().choices[0].message.content == text
    assert mock.stats().anthropic_requests == before


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_come_back_in_openai_shape(gateway: BackgroundServer, stream: bool) -> None:
    client = sdk(gateway)
    body = chat_body(unique("define hotpath"), model="claude-test", tools=TOOLS)
    if stream:
        chunks = list(client.chat.completions.create(**body, stream=True))
        calls = [t for c in chunks if c.choices for t in (c.choices[0].delta.tool_calls or [])]
        assert calls[0].function is not None
        name = calls[0].function.name
        arguments = "".join(t.function.arguments or "" for t in calls if t.function)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    else:
        answer = client.chat.completions.create(**body)
        tool_calls = answer.choices[0].message.tool_calls
        assert tool_calls is not None
        name = tool_calls[0].function.name
        arguments = tool_calls[0].function.arguments
        finish = answer.choices[0].finish_reason
    assert name == "lookup"
    assert "word" in json.loads(arguments)
    assert finish == "tool_calls"


def test_anthropic_errors_become_openai_errors(gateway: BackgroundServer) -> None:
    with httpx.Client(base_url=gateway.base) as http:
        limited = http.post(
            "/v1/chat/completions",
            json=chat_body(unique(), model="claude-test"),
            headers={"x-mock-fault": "429"},
        )
        refused = http.post(
            "/v1/chat/completions", json=chat_body(unique(), model="claude-test", n=2)
        )
    assert limited.status_code == 429
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "n"


def test_wrong_upstream_key_is_reported_as_authentication_error(mock: MockUpstream) -> None:
    config = gateway_config(mock.url, kind="anthropic", api_key="wrong")
    with running_gateway(config) as server, httpx.Client(base_url=server.base) as http:
        response = http.post("/v1/chat/completions", json=chat_body(unique(), model="c"))
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert "wrong" not in response.text
