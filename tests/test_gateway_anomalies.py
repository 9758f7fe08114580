"""Anomaly alerts in the gateway: a mock upstream whose latency steps up raises
an alert (log, metric, webhook) within 30 s of simulated time, so does a burst
of upstream errors, and nothing is raised while it is steady. The gateway's
clock is a ManualClock: windows close when the test says so, the latencies
themselves are real."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_support import chat_body, gateway_config, unique
from hotpath import ManualClock
from hotpath._background import BackgroundServer
from hotpath._errors import ConfigError
from hotpath.gateway import Gateway, TrafficConfig, load_config
from hotpath.gateway._cost_config import CostConfig
from hotpath.observe import ObserveConfig
from hotpath.providers.mock import Latency, MockConfig, MockUpstream
from test_gateway_cost import Hook

PER_WINDOW = 12  # requests per 5 s window: above the detectors' minimum count


def window(
    server: BackgroundServer, pool: ThreadPoolExecutor, ttft_ms: int = 20, *, all_ok: bool = True
) -> None:
    headers = {"x-mock-ttft-ms": str(ttft_ms), "cache-control": "no-store"}

    def one(_: int) -> int:
        with httpx.Client(base_url=server.base, timeout=30) as http:
            return http.post(
                "/v1/chat/completions", json=chat_body(unique()), headers=headers
            ).status_code

    statuses = list(pool.map(one, range(PER_WINDOW)))
    assert set(statuses) <= ({200} if all_ok else {200, 500}), statuses


def test_a_latency_step_raises_an_alert_within_30_seconds(caplog: Any) -> None:
    hook = Hook()
    clock = ManualClock()
    mock_config = MockConfig(
        completion_tokens=2, tokens_per_second=10_000, ttft=Latency.constant(0.02)
    )
    try:
        with MockUpstream(mock_config) as mock, ThreadPoolExecutor(6) as pool:
            config = gateway_config(
                mock.url,
                cost=CostConfig(store="memory://"),
                observe=ObserveConfig(alert_webhook=hook.url),
            )
            gateway = Gateway(config, clock=clock)
            with BackgroundServer(gateway) as server:
                monitor = gateway.state.anomalies.monitor
                assert monitor is not None
                for _ in range(30):  # 150 s of steady traffic: past the warm-up
                    window(server, pool, 20)
                    clock.advance(5.0)
                    server.call(monitor.tick)
                assert monitor.active() == []
                steady_alerts = hook.received[:]
                raised_after = None
                for i in range(1, 13):  # the upstream gets 4x slower
                    window(server, pool, 80)
                    clock.advance(5.0)
                    server.call(monitor.tick)
                    if any(a.signal == "latency" for a in monitor.active()):
                        raised_after = 5.0 * i
                        break
                text = httpx.get(f"{server.base}/metrics").text
            events = hook.wait_for(1)
    finally:
        hook.close()
    assert steady_alerts == []
    assert raised_after is not None
    assert raised_after <= 30.0
    latency = [e for e in events if e["event"] == "anomaly.raised" and e["signal"] == "latency"]
    assert latency
    assert latency[0]["direction"] == "up"
    assert latency[0]["value"] > latency[0]["baseline"]
    assert {e["key"] for e in latency} <= {"model:gpt-4o-mini", "upstream:mock"}
    assert 'hotpath_anomaly_active{key="upstream:mock",signal="latency"} 1.0' in text
    assert "hotpath_anomaly_alerts_total" in text
    assert any("anomaly: latency of" in r.getMessage() for r in caplog.records)


def test_an_error_burst_raises_an_alert_within_30_seconds() -> None:
    """The mock fails 1% of tries, then 30% (500s drawn per try, so the gateway's
    retries mostly succeed: the client sees 200s, the detectors see the tries)."""
    clock = ManualClock()
    steady = MockConfig(completion_tokens=2, tokens_per_second=10_000, faults={"500": 0.01}, seed=7)
    with MockUpstream(steady) as mock, ThreadPoolExecutor(6) as pool:
        # the product's retries (gateway_config turns them off for counting tests)
        gateway = Gateway(gateway_config(mock.url, traffic=TrafficConfig()), clock=clock)
        with BackgroundServer(gateway) as server:
            monitor = gateway.state.anomalies.monitor
            assert monitor is not None
            for _ in range(30):
                window(server, pool, all_ok=False)
                clock.advance(5.0)
                server.call(monitor.tick)
            assert monitor.active() == []
            mock.set_config(replace(steady, faults={"500": 0.3}))
            raised_after = None
            for i in range(1, 13):
                window(server, pool, all_ok=False)
                clock.advance(5.0)
                server.call(monitor.tick)
                if any(a.signal == "error_rate" for a in monitor.active()):
                    raised_after = 5.0 * i
                    break
            text = httpx.get(f"{server.base}/metrics").text
    assert raised_after is not None
    assert raised_after <= 30.0
    assert 'hotpath_anomaly_active{key="upstream:mock",signal="error_rate"} 1.0' in text


def test_observe_table_turns_the_detectors_off_and_names_the_webhook(tmp_path: Path) -> None:
    path = tmp_path / "hotpath.toml"
    path.write_text(
        '[observe]\nanomalies = false\nalert_webhook = "https://hooks.example/alerts"\n'
    )
    config = load_config(path, env={})
    assert config.observe.anomalies is False
    assert config.observe.alert_webhook == "https://hooks.example/alerts"
    assert Gateway(config).state.anomalies.monitor is None
    assert Gateway(load_config(None, env={})).state.anomalies.monitor is not None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('anomalies = "yes"', "observe.anomalies must be true or false, got 'yes'"),
        (
            'alert_webhook = "ftp://hooks.example/x"',
            "observe.alert_webhook must be an http(s) URL, got 'ftp://hooks.example/x'",
        ),
        ("alarms = true", "alarms"),
    ],
)
def test_bad_observe_values_name_the_key(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "hotpath.toml"
    path.write_text(f"[observe]\n{line}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert message in str(info.value)


def test_embeddings_tries_feed_their_model_and_the_upstream_s_errors() -> None:
    clock = ManualClock()
    with MockUpstream(MockConfig()) as mock:
        gateway = Gateway(gateway_config(mock.url), clock=clock)
        with BackgroundServer(gateway) as server, httpx.Client(base_url=server.base) as http:
            for i in range(PER_WINDOW):
                response = http.post(
                    "/v1/embeddings",
                    json={"model": "text-embedding-3-small", "input": f"text {unique()} {i}"},
                )
                assert response.status_code == 200
            monitor = gateway.state.anomalies.monitor
            assert monitor is not None
            clock.advance(5.0)
            server.call(monitor.tick)
            model = "model:text-embedding-3-small"
            assert monitor.detector("latency", model) is not None
            assert monitor.detector("error_rate", model) is not None
            assert monitor.detector("error_rate", "upstream:mock") is not None
            # an embedding's latency would blur the upstream's chat latency series
            assert monitor.detector("latency", "upstream:mock") is None


def test_a_request_s_own_4xx_is_not_an_upstream_error_and_streams_have_their_own_series() -> None:
    clock = ManualClock()
    with MockUpstream(MockConfig(completion_tokens=2)) as mock:
        gateway = Gateway(gateway_config(mock.url), clock=clock)
        with BackgroundServer(gateway) as server, httpx.Client(base_url=server.base) as http:
            for _ in range(PER_WINDOW):
                too_long = http.post(
                    "/v1/chat/completions",
                    json=chat_body(unique()),
                    headers={"x-mock-context-window": "1"},
                )
                assert too_long.status_code == 400
                streamed = http.post("/v1/chat/completions", json=chat_body(unique(), stream=True))
                assert streamed.status_code == 200
            monitor = gateway.state.anomalies.monitor
            assert monitor is not None
            clock.advance(5.0)
            server.call(monitor.tick)
            errors = monitor.detector("error_rate", "upstream:mock")
            assert errors is not None
            assert errors.baseline == 0.0  # the 400s were not counted as failures
            assert monitor.detector("latency", "model:gpt-4o-mini:stream") is not None
            assert monitor.detector("latency", "model:gpt-4o-mini") is None


def test_any_number_of_client_model_names_keeps_the_series_in_use() -> None:
    """Through a ``*`` route a client may name any model: the detectors' model keys
    are bounded as metric labels are (the first 200, then ``other``), and the
    monitor has room for all they can open, so no series in use is evicted."""
    gateway = Gateway(gateway_config("http://127.0.0.1:9/v1"), clock=ManualClock())
    anomalies = gateway.state.anomalies
    monitor = anomalies.monitor
    assert monitor is not None
    for i in range(1000):
        model = f"client-model-{i}"
        anomalies.upstream(model, "default", 0.05, error=False)
        anomalies.upstream(model, "default", 0.05, error=False, stream=True)
        anomalies.cache(model, hit=i % 2 == 0)
        anomalies.spend(model, 0.001)
    stats = monitor.stats()
    assert stats.evicted == 0
    assert monitor.detector("latency", "model:client-model-0") is not None
    assert monitor.detector("latency", "model:other") is not None
    assert monitor.detector("latency", "model:client-model-0:stream") is not None
    assert monitor.detector("latency", "model:client-model-999") is None
