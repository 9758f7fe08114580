"""Every error the gateway answers, over raw HTTP, in OpenAI's shape."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway_support import chat_body, gateway_config, running_gateway, sdk, unique
from hotpath._background import BackgroundServer
from hotpath.gateway import GatewayKey, ModelRoute, hash_key
from hotpath.providers.mock import MockConfig, MockUpstream


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream(MockConfig(completion_tokens=8)) as upstream:
        yield upstream


@pytest.fixture
def gateway(mock: MockUpstream) -> Iterator[BackgroundServer]:
    with running_gateway(gateway_config(mock.url, max_body_bytes=64 * 1024)) as server:
        yield server


def post(server: BackgroundServer, body: Any = None, **kwargs: Any) -> httpx.Response:
    with httpx.Client(base_url=server.base, timeout=30) as http:
        if body is not None:
            kwargs["json"] = body
        return http.post("/v1/chat/completions", **kwargs)


def error_of(response: httpx.Response) -> dict[str, Any]:
    payload = response.json()
    assert set(payload) == {"error"}
    error: dict[str, Any] = payload["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_invalid_json_is_400(gateway: BackgroundServer) -> None:
    response = post(gateway, content=b'{"model": ', headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"


def test_body_that_is_not_an_object_is_400(gateway: BackgroundServer) -> None:
    response = post(gateway, [1, 2])
    assert response.status_code == 400
    assert "JSON object" in error_of(response)["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": 7, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": ["hi"]}, "messages[0]"),
        ({"model": "m", "messages": [{"content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "user"}], "stream": "yes"}, "stream"),
        ({"model": "m", "messages": [{"role": "user"}], "temperature": "hot"}, "temperature"),
        ({"model": "m", "messages": [{"role": "user"}], "n": 0}, "n"),
        ({"model": "m", "messages": [{"role": "user"}], "max_tokens": 1.5}, "max_tokens"),
    ],
)
def test_missing_or_ill_typed_field_is_400_naming_it(
    gateway: BackgroundServer, body: dict[str, Any], param: str
) -> None:
    response = post(gateway, body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == param
    assert param.split(".")[-1].split("[")[0] in error["message"]


def test_unknown_model_is_404(mock: MockUpstream) -> None:
    config = gateway_config(mock.url, models={"gpt-4o-mini": ModelRoute(upstream="mock")})
    with running_gateway(config) as server:
        response = post(server, chat_body(model="no-such-model"))
        assert response.status_code == 404
        assert error_of(response)["code"] == "model_not_found"
        assert post(server, chat_body()).status_code == 200


def test_body_over_the_limit_is_413(gateway: BackgroundServer) -> None:
    response = post(gateway, chat_body("x" * 70_000))
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"


def test_unknown_route_is_404_and_wrong_method_405(gateway: BackgroundServer) -> None:
    with httpx.Client(base_url=gateway.base) as http:
        assert http.get("/v1/nope").status_code == 404
        assert http.get("/v1/chat/completions").status_code == 405


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_429_passes_through_with_retry_after_and_is_not_cached(
    gateway: BackgroundServer, stream: bool
) -> None:
    body = chat_body(unique(), stream=stream)
    limited = post(gateway, body, headers={"x-mock-fault": "429", "x-mock-retry-after": "7"})
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "7"
    assert error_of(limited)["type"] == "rate_limit_error"
    assert post(gateway, body).headers["x-hotpath-cache"] == "miss"


@pytest.mark.parametrize("status", ["500", "503"])
def test_upstream_5xx_is_passed_with_its_status(gateway: BackgroundServer, status: str) -> None:
    response = post(gateway, chat_body(unique()), headers={"x-mock-fault": status})
    assert response.status_code == int(status)
    error_of(response)


def test_sdk_sees_the_upstream_error_class(gateway: BackgroundServer) -> None:
    client = sdk(gateway, default_headers={"x-mock-fault": "429"})
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(**chat_body(unique()))


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_timeout_is_504(mock: MockUpstream, stream: bool) -> None:
    config = gateway_config(mock.url, read_timeout=0.3, first_token_timeout=0.3)
    with running_gateway(config) as server:
        response = post(
            server, chat_body(unique(), stream=stream), headers={"x-mock-fault": "hang"}
        )
        assert response.status_code == 504
        assert error_of(response)["code"] == "upstream_timeout"


def test_unreachable_upstream_is_502() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = gateway_config(f"http://127.0.0.1:{port}/v1", connect_timeout=2)
    with running_gateway(config) as server:
        response = post(server, chat_body(unique()))
        assert response.status_code == 502
        assert error_of(response)["code"] == "upstream_unreachable"


def test_cut_stream_ends_with_an_error_event_and_is_not_cached(gateway: BackgroundServer) -> None:
    body = chat_body(unique(), stream=True)
    cut = post(gateway, body, headers={"x-mock-fault": "cut"})
    assert cut.status_code == 200  # the headers had gone out before the cut
    events = [e for e in cut.text.split("\n\n") if e.strip()]
    assert '"error"' in events[-1]
    assert "[DONE]" not in cut.text
    again = post(gateway, body)
    assert again.headers["x-hotpath-cache"] == "miss"
    assert again.text.rstrip().endswith("data: [DONE]")


def test_cut_non_streamed_answer_is_502(gateway: BackgroundServer) -> None:
    response = post(gateway, chat_body(unique()), headers={"x-mock-fault": "cut"})
    assert response.status_code == 502


@pytest.mark.parametrize("stream", [False, True])
def test_content_filtered_answer_is_not_cached(gateway: BackgroundServer, stream: bool) -> None:
    body = chat_body(unique(), stream=stream)
    first = post(gateway, body, headers={"x-mock-fault": "content_filter"})
    assert first.status_code == 200
    assert "content_filter" in first.text
    assert post(gateway, body).headers["x-hotpath-cache"] == "miss"


def test_gateway_keys_authenticate_and_partition_the_cache(mock: MockUpstream) -> None:
    keys = (
        GatewayKey(name="a", sha256=hash_key("key-a"), tenant="team-a"),
        GatewayKey(name="b", sha256=hash_key("key-b"), tenant="team-b"),
    )
    with running_gateway(gateway_config(mock.url, keys=keys)) as server:
        body = chat_body(unique())
        missing = post(server, body)
        assert missing.status_code == 401
        assert error_of(missing)["code"] == "invalid_api_key"
        wrong = post(server, body, headers={"authorization": "Bearer key-zzzz"})
        assert wrong.status_code == 401
        assert "key-zzzz" not in wrong.text
        a = {"authorization": "Bearer key-a"}
        b = {"authorization": "Bearer key-b"}
        assert post(server, body, headers=a).headers["x-hotpath-cache"] == "miss"
        assert post(server, body, headers=a).headers["x-hotpath-cache"] == "hit"
        assert post(server, body, headers=b).headers["x-hotpath-cache"] == "miss"


def test_shared_cache_across_tenants_when_configured(mock: MockUpstream) -> None:
    keys = (
        GatewayKey(name="a", sha256=hash_key("key-a"), tenant="team-a"),
        GatewayKey(name="b", sha256=hash_key("key-b"), tenant="team-b"),
    )
    config = gateway_config(mock.url, keys=keys, cache_share_across_tenants=True)
    with running_gateway(config) as server:
        body = chat_body(unique())
        post(server, body, headers={"authorization": "Bearer key-a"})
        shared = post(server, body, headers={"authorization": "Bearer key-b"})
        assert shared.headers["x-hotpath-cache"] == "hit"


def test_upstream_key_never_reaches_clients_logs_or_metrics(
    mock: MockUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "sk-upstream-secret-123456"
    config = gateway_config(mock.url, api_key=secret)
    with running_gateway(config) as server:
        ok = post(server, chat_body(unique()))
        failed = post(server, chat_body(unique()), headers={"x-mock-fault": "500"})
        with httpx.Client(base_url=server.base) as http:
            metrics = http.get("/metrics").text
    sent = next(r for r in reversed(mock.requests) if r.path.endswith("/chat/completions"))
    assert sent.headers["authorization"] == f"Bearer {secret}"
    for text in (ok.text, failed.text, metrics, repr(config), caplog.text):
        assert secret not in text
