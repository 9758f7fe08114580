"""Traces with OpenTelemetry (the ``otel`` extra): a server span per request with
children for admission, the cache lookup and each upstream try; the client's W3C
``traceparent`` continued and the try's own sent upstream; nothing of
OpenTelemetry imported while tracing is off."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway_support import chat_body, gateway_config, gateway_of, running_gateway, unique
from hotpath._background import BackgroundServer
from hotpath._errors import ConfigError
from hotpath.gateway import (
    Gateway,
    GatewayConfig,
    ModelRoute,
    ModelTarget,
    TrafficConfig,
    UpstreamConfig,
    load_config,
)
from hotpath.gateway._cost_config import CostConfig
from hotpath.observe import ObserveConfig, load_tracer
from hotpath.providers.mock import MockConfig, MockUpstream
from hotpath.traffic._retry import RetryPolicy

TRACED = ObserveConfig(tracing=True, exporter="memory")
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream() as upstream:
        yield upstream


def exporter_of(server: BackgroundServer) -> InMemorySpanExporter:
    tracer = gateway_of(server).tracer
    assert tracer is not None
    exporter = tracer.exporter
    assert isinstance(exporter, InMemorySpanExporter)
    return exporter


def finished(server: BackgroundServer, requests: int) -> tuple[ReadableSpan, ...]:
    """The spans, once the ``requests`` server spans have ended (a request's span
    ends on the server's thread just after its response went out)."""
    exporter = exporter_of(server)
    deadline = time.monotonic() + 5
    while True:
        spans = exporter.get_finished_spans()
        roots = [s for s in spans if s.kind == SpanKind.SERVER]
        if len(roots) >= requests or time.monotonic() > deadline:
            return spans
        time.sleep(0.005)


def trees(spans: Sequence[ReadableSpan]) -> list[tuple[ReadableSpan, list[ReadableSpan]]]:
    """Each request span (a server span) with its children, in the order they started."""
    out = []
    for root in spans:
        if root.kind != SpanKind.SERVER:
            continue
        assert root.context is not None
        children = [
            s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id
        ]
        out.append((root, sorted(children, key=lambda s: s.start_time or 0)))
    return out


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_a_miss_has_admission_lookup_and_attempt_spans_and_the_answer_s_attributes(
    mock: MockUpstream,
) -> None:
    with running_gateway(gateway_config(mock.url, observe=TRACED)) as server:
        response = httpx.post(
            f"{server.base}/v1/chat/completions",
            json=chat_body(unique()),
            headers={"x-request-id": "miss-1"},
        )
        assert response.status_code == 200
        usage = response.json()["usage"]
        [(root, children)] = trees(finished(server, 1))
    assert root.name == "POST /v1/chat/completions"
    assert [c.name for c in children] == ["admission", "cache lookup", "upstream attempt"]
    assert attrs(root) | {"hotpath.cost_usd": 0} == {
        "http.request.method": "POST",
        "url.path": "/v1/chat/completions",
        "http.route": "/v1/chat/completions",
        "http.response.status_code": 200,
        "hotpath.request_id": "miss-1",
        "gen_ai.request.model": "gpt-4o-mini",
        "hotpath.deployment": "mock/gpt-4o-mini",
        "hotpath.cache": "miss",
        "gen_ai.usage.input_tokens": usage["prompt_tokens"],
        "gen_ai.usage.output_tokens": usage["completion_tokens"],
        "hotpath.cost_usd": 0,
    }
    assert attrs(root)["hotpath.cost_usd"] > 0
    assert root.status.status_code == StatusCode.UNSET
    lookup, attempt = children[1], children[2]
    assert attrs(lookup) == {"hotpath.cache": "miss"}
    assert attempt.kind == SpanKind.CLIENT
    assert attrs(attempt) == {
        "hotpath.deployment": "mock/gpt-4o-mini",
        "hotpath.upstream": "mock",
        "gen_ai.request.model": "gpt-4o-mini",
        "hotpath.attempt": 1,
        "hotpath.stream": False,
    }
    # Children lie within the request's span.
    assert root.start_time is not None and root.end_time is not None
    for child in children:
        assert child.start_time is not None and child.end_time is not None
        assert root.start_time <= child.start_time <= child.end_time <= root.end_time


def test_a_hit_has_no_attempt_and_says_which_tier(mock: MockUpstream) -> None:
    with running_gateway(gateway_config(mock.url, observe=TRACED)) as server:
        body = chat_body(unique(), stream=True)
        for _ in range(2):
            assert httpx.post(f"{server.base}/v1/chat/completions", json=body).status_code == 200
        [miss, hit] = trees(finished(server, 2))
    assert [c.name for c in miss[1]] == ["admission", "cache lookup", "upstream attempt"]
    assert "hotpath.first_byte_seconds" in attrs(miss[1][2])
    root, children = hit
    assert [c.name for c in children] == ["admission", "cache lookup"]
    assert attrs(children[1]) == {"hotpath.cache": "hit", "hotpath.cache.tier": "memory"}
    assert attrs(root)["hotpath.cache"] == "hit"
    assert attrs(root)["hotpath.cache.tier"] == "memory"
    assert "gen_ai.usage.input_tokens" not in attrs(root)


def test_a_retried_call_has_a_span_per_try(tmp_path: Path) -> None:
    with (
        MockUpstream(MockConfig(faults={"500": 1.0})) as bad,
        MockUpstream() as good,
    ):
        config = GatewayConfig(
            upstreams=(
                UpstreamConfig(name="bad", base_url=bad.url),
                UpstreamConfig(name="good", base_url=good.url),
            ),
            models={
                "gpt-4o-mini": ModelRoute(
                    deployments=(ModelTarget(upstream="bad"), ModelTarget(upstream="good")),
                    routing="order",
                )
            },
            traffic=TrafficConfig(retry=RetryPolicy(attempts=2, base_delay=0.001)),
            cache=gateway_config(good.url).cache,
            cost=CostConfig(store="memory://"),  # no usage file in the working directory
            observe=TRACED,
        )
        with BackgroundServer(Gateway(config)) as server:
            response = httpx.post(f"{server.base}/v1/chat/completions", json=chat_body(unique()))
            assert response.status_code == 200
            [(root, children)] = trees(finished(server, 1))
    attempts = [c for c in children if c.name == "upstream attempt"]
    assert [attrs(a)["hotpath.deployment"] for a in attempts] == [
        "bad/gpt-4o-mini",
        "good/gpt-4o-mini",
    ]
    assert [attrs(a)["hotpath.attempt"] for a in attempts] == [1, 2]
    first, second = attempts
    assert first.status.status_code == StatusCode.ERROR
    assert attrs(first)["http.response.status_code"] == 500
    assert [e.name for e in first.events] == ["exception"]
    assert second.status.status_code == StatusCode.UNSET
    assert attrs(root)["hotpath.deployment"] == "good/gpt-4o-mini"
    assert attrs(root)["http.response.status_code"] == 200


def test_a_failed_request_s_span_is_an_error(mock: MockUpstream) -> None:
    with running_gateway(gateway_config(mock.url, observe=TRACED)) as server:
        response = httpx.post(
            f"{server.base}/v1/chat/completions",
            json=chat_body(unique()),
            headers={"x-mock-fault": "503"},
        )
        assert response.status_code == 503
        [(root, children)] = trees(finished(server, 1))
    assert attrs(root)["http.response.status_code"] == 503
    assert root.status.status_code == StatusCode.ERROR
    assert children[-1].status.status_code == StatusCode.ERROR


def test_the_client_traceparent_is_continued_and_each_try_s_is_sent_upstream(
    mock: MockUpstream,
) -> None:
    with running_gateway(gateway_config(mock.url, observe=TRACED)) as server:
        mock.reset()
        prompt = unique()
        response = httpx.post(
            f"{server.base}/v1/chat/completions",
            json=chat_body(prompt),
            headers={"traceparent": TRACEPARENT, "tracestate": "vendor=1"},
        )
        assert response.status_code == 200
        embedded = httpx.post(
            f"{server.base}/v1/embeddings",
            json={"model": "text-embedding-3-small", "input": [unique()]},
            headers={"traceparent": TRACEPARENT},
        )
        assert embedded.status_code == 200
        spans = finished(server, 2)
    [(chat, chat_children), (embed, embed_children)] = trees(spans)
    for root in (chat, embed):
        assert root.context is not None and root.parent is not None
        assert f"{root.context.trace_id:032x}" == TRACE_ID
        assert f"{root.parent.span_id:016x}" == PARENT_ID
        assert root.parent.is_remote
    sent = [r.headers for r in mock.requests]
    assert len(sent) == 2
    for headers, children in ((sent[0], chat_children), (sent[1], embed_children)):
        [attempt] = [c for c in children if c.name == "upstream attempt"]
        assert attempt.context is not None
        version, trace_id, span_id, flags = headers["traceparent"].split("-")
        assert (version, trace_id, span_id) == ("00", TRACE_ID, f"{attempt.context.span_id:016x}")
        assert int(flags, 16) & 1  # sampled
    assert sent[0]["tracestate"] == "vendor=1"


def test_without_a_client_traceparent_the_request_starts_a_trace(mock: MockUpstream) -> None:
    with running_gateway(gateway_config(mock.url, observe=TRACED)) as server:
        mock.reset()
        httpx.post(f"{server.base}/v1/chat/completions", json=chat_body(unique()))
        [(root, _)] = trees(finished(server, 1))
    assert root.parent is None and root.context is not None
    assert mock.requests[0].headers["traceparent"].split("-")[1] == f"{root.context.trace_id:032x}"


def test_an_unsampled_client_trace_records_nothing_but_still_propagates(
    mock: MockUpstream,
) -> None:
    with running_gateway(gateway_config(mock.url, observe=TRACED)) as server:
        mock.reset()
        unsampled = f"00-{TRACE_ID}-{PARENT_ID}-00"
        httpx.post(
            f"{server.base}/v1/chat/completions",
            json=chat_body(unique()),
            headers={"traceparent": unsampled},
        )
        time.sleep(0.1)
        assert exporter_of(server).get_finished_spans() == ()
    traceparent = mock.requests[0].headers["traceparent"]
    assert traceparent.split("-")[1] == TRACE_ID and traceparent.endswith("-00")


def test_tracing_is_off_by_default_and_then_sends_no_traceparent(mock: MockUpstream) -> None:
    assert GatewayConfig().observe == ObserveConfig()
    with running_gateway(gateway_config(mock.url)) as server:
        assert gateway_of(server).tracer is None
        mock.reset()
        httpx.post(
            f"{server.base}/v1/chat/completions",
            json=chat_body(unique()),
            headers={"traceparent": TRACEPARENT},
        )
    assert "traceparent" not in mock.requests[0].headers


def test_with_tracing_off_nothing_of_opentelemetry_is_imported(tmp_path: Path) -> None:
    """In a fresh interpreter where every OpenTelemetry import fails (and is
    recorded with the module that tried it), a gateway with tracing off starts and
    answers, and no hotpath module tried. (redis-py tries on its own when
    OpenTelemetry is installed; that is not ours.)"""
    code = """
import asyncio, sys

attempts = []

class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            frame = sys._getframe(1)
            while frame is not None and "importlib" in frame.f_code.co_filename:
                frame = frame.f_back
            attempts.append((name, frame.f_globals.get("__name__", "") if frame else ""))
            raise ImportError(name)
        return None

sys.meta_path.insert(0, Block())

from hotpath.gateway import Gateway, GatewayConfig, UpstreamConfig, CacheConfig
import hotpath, hotpath.observe, hotpath.gateway._serve
config = GatewayConfig(
    upstreams=(UpstreamConfig(name="u", base_url="http://127.0.0.1:9/v1"),),
    cache=CacheConfig(tiers=("memory://",)),
)
app = Gateway(config)

async def main():
    sent = []
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}
    async def send(message):
        sent.append(message)
    scope = {"type": "http", "method": "GET", "path": "/healthz", "headers": []}
    await app(scope, receive, send)
    await app.aclose()
    assert sent[0]["status"] == 200, sent

asyncio.run(main())
ours = [a for a in attempts if a[1].startswith("hotpath")]
assert not ours, ours
print("clean")
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,  # the gateway's default usage file goes there
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "clean"


def test_tracing_without_the_extra_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("opentelemetry", "opentelemetry.trace", "opentelemetry.sdk.trace"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ConfigError, match=r"pip install 'hotpath\[otel\]'"):
        load_tracer(TRACED)
    with pytest.raises(ConfigError, match=r"hotpath\[otel\]"):
        Gateway(GatewayConfig(observe=TRACED))
    assert load_tracer(ObserveConfig()) is None


def test_otlp_without_its_exporter_package_names_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ConfigError, match="opentelemetry-exporter-otlp-proto-http"):
        load_tracer(ObserveConfig(tracing=True, exporter="otlp"))


def test_observe_settings_load_from_the_file_and_env(tmp_path: Path) -> None:
    path = tmp_path / "hotpath.toml"
    path.write_text(
        '[observe]\ntracing = true\nexporter = "console"\n'
        'endpoint = "http://collector:4318/v1/traces"\nsample_ratio = 0.25\n'
    )
    config = load_config(path, env={})
    assert config.observe == ObserveConfig(
        tracing=True,
        exporter="console",
        endpoint="http://collector:4318/v1/traces",
        sample_ratio=0.25,
    )
    env = {"HOTPATH_TRACING": "off", "HOTPATH_TRACING_EXPORTER": "memory"}
    assert load_config(path, env=env).observe.tracing is False
    assert load_config(path, env=env).observe.exporter == "memory"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('exporter = "zipkin"', "observe.exporter must be one of"),
        ("sample_ratio = 2", r"observe.sample_ratio must be in \[0, 1\]"),
        ('endpoint = "collector:4318"', "observe.endpoint must be an http"),
        ('tracing = "yes"', "observe.tracing must be true or false"),
        ("colour = 1", "unknown key observe.colour"),
    ],
)
def test_bad_observe_settings_name_the_key(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "hotpath.toml"
    path.write_text(f"[observe]\n{toml}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path, env={})


def test_probes_and_scrapes_are_not_traced(mock: MockUpstream) -> None:
    with running_gateway(gateway_config(mock.url, observe=TRACED)) as server:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert httpx.get(f"{server.base}{path}").status_code == 200
        httpx.get(f"{server.base}/v1/models")
        [(root, children)] = trees(finished(server, 1))
    assert root.name == "GET /v1/models" and children == []
