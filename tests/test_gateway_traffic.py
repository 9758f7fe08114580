"""Traffic control in the gateway, through the openai SDK and raw HTTP against mock
upstreams with injected faults: rate limits, retries, pacing by the provider's
Retry-After, circuit breakers with fallbacks, context-length fallbacks,
concurrency shedding, and the headers and metrics that show what happened."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway_support import chat_body, gateway_config, sdk, unique
from hotpath import ManualClock
from hotpath._background import BackgroundServer
from hotpath.gateway import (
    ConcurrencyConfig,
    Gateway,
    GatewayConfig,
    GatewayKey,
    LimitRule,
    ModelRoute,
    ModelTarget,
    TrafficConfig,
    UpstreamConfig,
    hash_key,
)
from hotpath.gateway._cost_config import CostConfig
from hotpath.providers.mock import MockConfig, MockUpstream
from hotpath.traffic._breaker import BreakerConfig
from hotpath.traffic._retry import RetryPolicy

NO_RETRY = RetryPolicy(attempts=1)


@pytest.fixture(scope="module")
def ok_mock() -> Iterator[MockUpstream]:
    with MockUpstream(MockConfig(completion_tokens=4)) as upstream:
        yield upstream


@pytest.fixture
def bad_mock() -> Iterator[MockUpstream]:
    """A mock that answers 500 to everything (until a test heals it)."""
    with MockUpstream(MockConfig(completion_tokens=4, faults={"500": 1.0})) as upstream:
        yield upstream


def two_upstreams(bad: MockUpstream, good: MockUpstream) -> tuple[UpstreamConfig, ...]:
    return (
        UpstreamConfig(name="bad", base_url=bad.url, forward_headers=("x-mock-*",)),
        UpstreamConfig(name="good", base_url=good.url, forward_headers=("x-mock-*",)),
    )


def serve(config: GatewayConfig, clock: ManualClock | None = None) -> BackgroundServer:
    return BackgroundServer(Gateway(config, clock=clock))


def post(server: BackgroundServer, body: dict[str, Any], **headers: str) -> httpx.Response:
    with httpx.Client(base_url=server.base, timeout=30) as http:
        return http.post("/v1/chat/completions", json=body, headers=headers)


def metric(server: BackgroundServer, name: str, **labels: str) -> float:
    """The value of one sample of ``/metrics`` (0 if absent)."""
    text = httpx.get(f"{server.base}/metrics").text
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- rate limits ---------------------------------------------------------------------


def keyed_config(mock: MockUpstream, traffic: TrafficConfig) -> GatewayConfig:
    keys = (
        GatewayKey(name="alice", sha256=hash_key("sk-alice"), tenant="acme"),
        GatewayKey(name="bob", sha256=hash_key("sk-bob"), tenant="acme"),
        GatewayKey(name="carol", sha256=hash_key("sk-carol"), tenant="other"),
    )
    return gateway_config(mock.url, keys=keys, traffic=traffic)


def test_key_rpm_limit_answers_429_with_retry_after_then_recovers(ok_mock: MockUpstream) -> None:
    clock = ManualClock()
    traffic = TrafficConfig(limits=(LimitRule(scope="key", rpm=60, burst=2),), retry=NO_RETRY)
    with serve(keyed_config(ok_mock, traffic), clock) as server:
        alice = sdk(server, api_key="sk-alice")
        for _ in range(2):
            alice.chat.completions.create(**chat_body(unique()))
        with pytest.raises(openai.RateLimitError) as caught:
            alice.chat.completions.create(**chat_body(unique()))
        response = caught.value.response
        assert response.headers["retry-after"] == "1"
        assert response.headers["x-hotpath-rate-limit"] == "key:alice:rpm"
        assert caught.value.code == "rate_limit_exceeded"
        # Another key has its own bucket.
        sdk(server, api_key="sk-bob").chat.completions.create(**chat_body(unique()))
        clock.advance(1.0)
        alice.chat.completions.create(**chat_body(unique()))
        assert metric(server, "hotpath_rate_limit_decisions_total", outcome="limited") == 1


def test_tenant_limit_is_shared_by_its_keys(ok_mock: MockUpstream) -> None:
    traffic = TrafficConfig(limits=(LimitRule(scope="tenant", rpm=60, burst=1),), retry=NO_RETRY)
    with serve(keyed_config(ok_mock, traffic), ManualClock()) as server:
        sdk(server, api_key="sk-alice").chat.completions.create(**chat_body(unique()))
        with pytest.raises(openai.RateLimitError) as caught:
            sdk(server, api_key="sk-bob").chat.completions.create(**chat_body(unique()))
        assert caught.value.response.headers["x-hotpath-rate-limit"] == "tenant:acme:rpm"
        sdk(server, api_key="sk-carol").chat.completions.create(**chat_body(unique()))


def test_cache_hits_count_against_rpm(ok_mock: MockUpstream) -> None:
    traffic = TrafficConfig(limits=(LimitRule(scope="global", rpm=60, burst=2),))
    with serve(gateway_config(ok_mock.url, traffic=traffic), ManualClock()) as server:
        body = chat_body(unique())
        assert post(server, body).headers["x-hotpath-cache"] == "miss"
        assert post(server, body).headers["x-hotpath-cache"] == "hit"
        assert post(server, body).status_code == 429


def test_queue_mode_waits_for_the_slot_instead_of_refusing(ok_mock: MockUpstream) -> None:
    traffic = TrafficConfig(
        limits=(LimitRule(scope="global", rpm=600, burst=1),), on_limit="queue", max_wait=5.0
    )
    # The clock stands still: the second request waits 0.1 s for its slot, the
    # third 0.2 s (the gateway's own sleeps; the limiter's time does not move).
    with serve(gateway_config(ok_mock.url, traffic=traffic), ManualClock()) as server:
        statuses = [post(server, chat_body(unique())).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        assert metric(server, "hotpath_rate_limit_decisions_total", outcome="queued") == 2
        # A caller that will not wait is refused at once.
        refused = post(server, chat_body(unique()), **{"x-hotpath-max-wait": "0"})
        assert refused.status_code == 429


def test_tpm_reserves_max_tokens_and_settles_on_usage(ok_mock: MockUpstream) -> None:
    clock = ManualClock()
    # 1,000 tokens at once; each request reserves its prompt plus max_tokens=400,
    # and really uses its prompt plus 4 completion tokens.
    traffic = TrafficConfig(
        limits=(LimitRule(scope="global", tpm=60_000, token_burst=1_000),), retry=NO_RETRY
    )
    with serve(gateway_config(ok_mock.url, traffic=traffic), clock) as server:
        for _ in range(6):
            response = post(server, chat_body(unique(), max_tokens=400))
            # Without settling, the third would find the 1,000 tokens spent.
            assert response.status_code == 200
        too_big = post(server, chat_body(unique(), max_tokens=5_000))
        assert too_big.status_code == 429
        assert too_big.json()["error"]["code"] == "request_too_large"


def test_redis_down_fails_open_or_closed_by_config(ok_mock: MockUpstream) -> None:
    dead = "redis://127.0.0.1:1/0"
    rule = (LimitRule(scope="global", rpm=600),)
    for mode, status in (("open", 200), ("closed", 429)):
        traffic = TrafficConfig(limits=rule, redis_url=dead, on_redis_error=mode)  # type: ignore[arg-type]
        with serve(gateway_config(ok_mock.url, traffic=traffic)) as server:
            response = post(server, chat_body(unique()))
            assert response.status_code == status
            if status == 429:
                assert response.headers["x-hotpath-rate-limit"] == "redis-unavailable"
            unavailable = "hotpath_rate_limit_redis_unavailable_total"
            assert metric(server, unavailable, on_error=mode) == 1


# -- retries, pacing, breakers, fallbacks ----------------------------------------------


def test_failed_deployment_is_retried_on_another(
    bad_mock: MockUpstream, ok_mock: MockUpstream
) -> None:
    route = ModelRoute(
        deployments=(ModelTarget(upstream="bad"), ModelTarget(upstream="good")), routing="order"
    )
    config = GatewayConfig(
        upstreams=two_upstreams(bad_mock, ok_mock),
        models={"*": route},
        cache=gateway_config(ok_mock.url).cache,
        cost=CostConfig(store="memory://"),  # no usage file in the working directory
    )
    with serve(config) as server:
        response = post(server, chat_body(unique()))
        assert response.status_code == 200
        assert response.headers["x-hotpath-attempts"] == "2"
        assert response.headers["x-hotpath-deployment"] == "good/gpt-4o-mini"
        assert bad_mock.stats().faults_injected == 1
        assert metric(server, "hotpath_retries_total", error="UpstreamStatusError") == 1


def test_retryable_error_is_retried_up_to_the_policy_then_answered(
    ok_mock: MockUpstream,
) -> None:
    traffic = TrafficConfig(retry=RetryPolicy(attempts=3, base_delay=0.01))
    with serve(gateway_config(ok_mock.url, traffic=traffic)) as server:
        before = ok_mock.stats().chat_requests
        response = post(server, chat_body(unique()), **{"x-mock-fault": "500"})
        assert response.status_code == 500
        # Three tries, then the upstream's own error.
        assert ok_mock.stats().chat_requests - before == 3
        assert response.headers["x-hotpath-attempts"] == "3"
        bad_request = post(server, {"model": "gpt-4o-mini", "messages": []})
        assert bad_request.status_code == 400
        assert "x-hotpath-attempts" not in bad_request.headers


def test_429_with_retry_after_holds_the_deployment_and_uses_another(
    ok_mock: MockUpstream,
) -> None:
    with MockUpstream(MockConfig(faults={"429": 1.0}, retry_after=30)) as throttled:
        route = ModelRoute(
            deployments=(ModelTarget(upstream="bad"), ModelTarget(upstream="good")),
            routing="order",
        )
        config = GatewayConfig(
            upstreams=two_upstreams(throttled, ok_mock),
            models={"*": route},
            cache=gateway_config(ok_mock.url).cache,
            cost=CostConfig(store="memory://"),  # no usage file in the working directory
        )
        with serve(config) as server:
            first = post(server, chat_body(unique()))
            assert first.status_code == 200
            assert first.headers["x-hotpath-attempts"] == "2"
            for _ in range(5):
                again = post(server, chat_body(unique()))
                assert again.headers["x-hotpath-attempts"] == "1"
                assert again.headers["x-hotpath-deployment"] == "good/gpt-4o-mini"
            # The throttled deployment saw one request, not one per call.
            assert throttled.stats().faults_injected == 1


def test_stream_that_sent_bytes_is_never_retried(ok_mock: MockUpstream) -> None:
    traffic = TrafficConfig(retry=RetryPolicy(attempts=3, base_delay=0.01))
    with serve(gateway_config(ok_mock.url, traffic=traffic)) as server:
        before = ok_mock.stats().chat_requests
        with (
            httpx.Client(base_url=server.base, timeout=30) as http,
            http.stream(
                "POST",
                "/v1/chat/completions",
                json=chat_body(unique(), stream=True),
                headers={"x-mock-fault": "cut"},
            ) as response,
        ):
            body = b"".join(response.iter_bytes())
        assert response.status_code == 200
        assert b"upstream_stream_cut" in body
        assert b"[DONE]" not in body
        assert ok_mock.stats().chat_requests - before == 1


def breaker_config(bad: MockUpstream, good: MockUpstream, **traffic: Any) -> GatewayConfig:
    models = {
        "primary": ModelRoute(upstream="bad", model="gpt-4o-mini", fallbacks=("backup",)),
        "backup": ModelRoute(upstream="good", model="gpt-4o-mini"),
    }
    breaker = BreakerConfig(window=4, min_calls=2, failure_rate=0.5, wait=10.0, half_open_calls=1)
    return GatewayConfig(
        upstreams=two_upstreams(bad, good),
        models=models,
        cache=gateway_config(good.url).cache,
        cost=CostConfig(store="memory://"),  # no usage file in the working directory
        traffic=TrafficConfig(breaker=breaker, retry=NO_RETRY, **traffic),
    )


def test_dead_upstream_opens_the_breaker_fallback_serves_and_it_closes_on_heal(
    bad_mock: MockUpstream, ok_mock: MockUpstream
) -> None:
    clock = ManualClock()
    with serve(breaker_config(bad_mock, ok_mock), clock) as server:
        client = sdk(server)
        for _ in range(2):
            raw = client.chat.completions.with_raw_response.create(
                model="primary", messages=[{"role": "user", "content": unique()}]
            )
            assert raw.headers["x-hotpath-model"] == "backup"
            assert raw.headers["x-hotpath-fallbacks"] == "primary->backup"
        assert bad_mock.stats().faults_injected == 2
        assert metric(server, "hotpath_circuit_breaker_state", deployment="bad/gpt-4o-mini") == 1
        # Open: the dead upstream is not called at all; the fallback answers.
        for _ in range(3):
            response = post(server, {**chat_body(unique()), "model": "primary"})
            assert response.status_code == 200
            assert response.headers["x-hotpath-deployment"] == "good/gpt-4o-mini"
        assert bad_mock.stats().chat_requests == 2
        # The upstream heals; after the wait one trial call closes the breaker.
        bad_mock.set_config(MockConfig(completion_tokens=4))
        clock.advance(10.0)
        healed = post(server, {**chat_body(unique()), "model": "primary"})
        assert healed.status_code == 200
        assert healed.headers["x-hotpath-deployment"] == "bad/gpt-4o-mini"
        assert "x-hotpath-fallbacks" not in healed.headers
        assert metric(server, "hotpath_circuit_breaker_state", deployment="bad/gpt-4o-mini") == 0


def test_open_breaker_without_fallback_fails_fast_with_503(bad_mock: MockUpstream) -> None:
    breaker = BreakerConfig(window=2, min_calls=2, failure_rate=0.5, wait=30.0)
    config = gateway_config(bad_mock.url, traffic=TrafficConfig(breaker=breaker, retry=NO_RETRY))
    with serve(config, ManualClock()) as server:
        for _ in range(2):
            assert post(server, chat_body(unique())).status_code == 500
        response = post(server, chat_body(unique()))
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "circuit_open"
        assert response.headers["retry-after"] == "30"
        assert bad_mock.stats().chat_requests == 2


def test_unreachable_upstream_falls_back(ok_mock: MockUpstream) -> None:
    models = {
        "primary": ModelRoute(upstream="gone", model="gpt-4o-mini", fallbacks=("backup",)),
        "backup": ModelRoute(upstream="good", model="gpt-4o-mini"),
    }
    config = GatewayConfig(
        upstreams=(
            UpstreamConfig(name="gone", base_url="http://127.0.0.1:1/v1", connect_timeout=2),
            UpstreamConfig(name="good", base_url=ok_mock.url),
        ),
        models=models,
        cache=gateway_config(ok_mock.url).cache,
        cost=CostConfig(store="memory://"),  # no usage file in the working directory
        traffic=TrafficConfig(retry=RetryPolicy(attempts=2, base_delay=0.01)),
    )
    with serve(config) as server:
        response = post(server, {**chat_body(unique()), "model": "primary"})
        assert response.status_code == 200
        assert response.headers["x-hotpath-model"] == "backup"
        assert response.headers["x-hotpath-attempts"] == "3"


def context_models() -> dict[str, ModelRoute]:
    return {
        "small": ModelRoute(upstream="mock", model="small", context_fallback="large"),
        "large": ModelRoute(upstream="mock", model="large"),
    }


def test_context_length_error_falls_back_to_the_larger_model() -> None:
    with MockUpstream(MockConfig(context_windows={"small": 40})) as mock:
        config = gateway_config(mock.url, models=context_models())
        with serve(config) as server:
            response = post(server, {**chat_body("word " * 100), "model": "small"})
            assert response.status_code == 200
            assert response.headers["x-hotpath-model"] == "large"
            assert response.headers["x-hotpath-deployment"] == "mock/large"
            assert mock.stats().context_length_exceeded == 1


def test_known_context_window_skips_the_doomed_call() -> None:
    models = context_models()
    models["small"] = ModelRoute(
        upstream="mock", model="small", context_window=40, context_fallback="large"
    )
    with (
        MockUpstream(MockConfig(context_windows={"small": 40})) as mock,
        serve(gateway_config(mock.url, models=models)) as server,
    ):
        response = post(server, {**chat_body("word " * 100), "model": "small"})
        assert response.status_code == 200
        assert response.headers["x-hotpath-model"] == "large"
        assert response.headers["x-hotpath-attempts"] == "1"
        assert mock.stats().context_length_exceeded == 0
        short = post(server, {**chat_body("hi"), "model": "small"})
        assert short.headers["x-hotpath-deployment"] == "mock/small"


# -- concurrency -----------------------------------------------------------------------


def test_full_concurrency_queue_sheds_with_503_and_retry_after() -> None:
    concurrency = ConcurrencyConfig(algorithm="fixed", initial=1, max_queue=0)
    with MockUpstream(MockConfig(completion_tokens=4)) as mock:
        traffic = TrafficConfig(concurrency=concurrency, retry=NO_RETRY)
        with serve(gateway_config(mock.url, traffic=traffic)) as server:
            results: list[httpx.Response] = []
            slow = threading.Thread(
                target=lambda: results.append(
                    post(server, chat_body(unique()), **{"x-mock-ttft-ms": "1500"})
                )
            )
            slow.start()
            mock.wait_for(lambda s: s.in_flight == 1)
            shed = post(server, chat_body(unique()))
            slow.join()
            assert shed.status_code == 503
            assert shed.json()["error"]["code"] == "overloaded"
            assert int(shed.headers["retry-after"]) >= 1
            assert results[0].status_code == 200
            assert metric(server, "hotpath_shed_requests_total", priority="standard") == 1


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-hotpath-priority", "urgent"),
        ("x-hotpath-max-wait", "soon"),
        ("x-hotpath-max-wait", "-1"),
    ],
)
def test_bad_traffic_headers_are_400_naming_them(
    ok_mock: MockUpstream, header: str, value: str
) -> None:
    with serve(gateway_config(ok_mock.url)) as server:
        response = post(server, chat_body(unique()), **{header: value})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["param"] == header
        assert repr(value) in error["message"]


def test_priority_header_is_accepted_and_routing_headers_are_sent(ok_mock: MockUpstream) -> None:
    with serve(gateway_config(ok_mock.url)) as server:
        response = post(server, chat_body(unique()), **{"x-hotpath-priority": "interactive"})
        assert response.status_code == 200
        assert response.headers["x-hotpath-deployment"] == "mock/gpt-4o-mini"
        assert response.headers["x-hotpath-attempts"] == "1"
        assert metric(server, "hotpath_routed_requests_total", deployment="mock/gpt-4o-mini") == 1


def test_provider_rate_limit_headers_pace_calls_instead_of_bouncing_off_429s() -> None:
    # The provider allows 3 requests a minute; its clock stands still, so it never
    # refills. The gateway reads x-ratelimit-* and stops sending when none are left.
    with (
        MockUpstream(MockConfig(rate_limit_rpm=3), clock=ManualClock()) as mock,
        serve(gateway_config(mock.url)) as server,
    ):
        statuses = [
            post(server, chat_body(unique()), **{"x-hotpath-max-wait": "0"}).status_code
            for _ in range(6)
        ]
        assert statuses == [200, 200, 200, 429, 429, 429]
        assert mock.stats().chat_requests == 3
        assert mock.stats().rate_limited == 0
        refused = post(server, chat_body(unique()), **{"x-hotpath-max-wait": "0"})
        assert refused.headers["x-hotpath-rate-limit"] == "provider:mock/gpt-4o-mini"
        # 3 a minute: one comes back every 20 s.
        assert refused.headers["retry-after"] == "20"


def test_429_storm_with_retry_after_is_waited_out_within_the_deadline() -> None:
    # Every answer is a 429 asking for 0.2 s: the call waits it out and retries
    # until its attempts are spent, then answers with the provider's 429.
    traffic = TrafficConfig(retry=RetryPolicy(attempts=3, base_delay=0.01))
    with (
        MockUpstream(MockConfig(faults={"429": 1.0}, retry_after=0.2)) as mock,
        serve(gateway_config(mock.url, traffic=traffic)) as server,
    ):
        response = post(server, chat_body(unique()))
        assert response.status_code == 429
        assert response.headers["x-hotpath-attempts"] == "3"
        assert mock.stats().faults_injected == 3


def test_5xx_burst_is_absorbed_by_retries_within_the_budget() -> None:
    traffic = TrafficConfig(retry=RetryPolicy(attempts=4, base_delay=0.005, max_delay=0.02))
    with (
        MockUpstream(MockConfig(completion_tokens=2, faults={"500": 0.1}, seed=7)) as mock,
        serve(gateway_config(mock.url, traffic=traffic)) as server,
    ):
        statuses = [post(server, chat_body(unique())).status_code for _ in range(30)]
        faults = mock.stats().faults_injected
        assert statuses == [200] * 30
        assert faults > 0
        retried = metric(server, "hotpath_retries_total", error="UpstreamStatusError")
        assert retried == faults


def test_outage_is_not_amplified_beyond_the_retry_budget() -> None:
    # Every call fails. Three attempts each would triple the load; the budget (20% of
    # the requests plus a floor of 1 a second over its 10 s window) caps the retries.
    requests = 40
    traffic = TrafficConfig(
        retry=RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.002),
        retry_budget=0.2,
        breaker=None,
    )
    with (
        MockUpstream(MockConfig(completion_tokens=2, faults={"500": 1.0})) as mock,
        serve(gateway_config(mock.url, traffic=traffic)) as server,
    ):
        statuses = {post(server, chat_body(unique())).status_code for _ in range(requests)}
        assert statuses == {500}
        sent = mock.stats().chat_requests
        assert sent <= requests + 0.2 * requests + 10
        assert metric(server, "hotpath_retries_given_up_total", reason="budget") > 0


def test_hanging_deployment_times_out_and_the_other_answers() -> None:
    config = MockConfig(completion_tokens=2, model_faults={"slow-model": {"hang": 1.0}})
    with MockUpstream(config) as mock:
        route = ModelRoute(
            deployments=(
                ModelTarget(upstream="mock", model="slow-model"),
                ModelTarget(upstream="mock", model="fast-model"),
            ),
            routing="order",
        )
        traffic = TrafficConfig(retry=RetryPolicy(attempts=2))
        gateway = gateway_config(
            mock.url,
            models={"*": route},
            read_timeout=0.3,
            first_token_timeout=0.3,
            traffic=traffic,
        )
        with serve(gateway) as server:
            for stream in (False, True):
                response = post(server, chat_body(unique(), stream=stream))
                assert response.status_code == 200
                assert response.headers["x-hotpath-deployment"] == "mock/fast-model"
                assert response.headers["x-hotpath-attempts"] == "2"


def test_breaker_opened_by_one_replica_stops_the_others(
    bad_mock: MockUpstream, redis_url: str
) -> None:
    breaker = BreakerConfig(window=2, min_calls=2, failure_rate=0.5, wait=60.0)
    config = gateway_config(
        bad_mock.url,
        tiers=("memory://", redis_url),
        traffic=TrafficConfig(breaker=breaker, retry=NO_RETRY),
    )
    with serve(config) as first, serve(config) as second:
        for _ in range(2):
            assert post(first, chat_body(unique())).status_code == 500
        assert post(first, chat_body(unique())).status_code == 503
        assert bad_mock.stats().chat_requests == 2
        # The other replica learnt it through Redis: it does not call the dead upstream.
        gateway = second.app
        assert isinstance(gateway, Gateway)
        breaker_of_second = gateway.state.traffic.breaker("mock/gpt-4o-mini")
        assert breaker_of_second is not None
        deadline = 100
        while breaker_of_second.state != "open" and deadline:
            deadline -= 1
            threading.Event().wait(0.02)  # the open travels by pub/sub: poll briefly
        response = post(second, chat_body(unique()))
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "circuit_open"
        assert bad_mock.stats().chat_requests == 2


def test_under_pressure_interactive_goes_before_batch_that_came_first() -> None:
    concurrency = ConcurrencyConfig(algorithm="fixed", initial=1, max_queue=10)
    traffic = TrafficConfig(concurrency=concurrency, retry=NO_RETRY)
    with (
        MockUpstream(MockConfig(completion_tokens=2)) as mock,
        serve(gateway_config(mock.url, traffic=traffic)) as server,
    ):
        gateway = server.app
        assert isinstance(gateway, Gateway)
        prompts: dict[str, str] = {}

        def send(name: str, priority: str, ttft_ms: str) -> None:
            headers = {"x-hotpath-priority": priority, "x-mock-ttft-ms": ttft_ms}
            prompt = unique(name)
            prompts[prompt] = name
            response = post(server, chat_body(prompt), **headers)
            assert response.status_code == 200

        def queued() -> int:
            limiter = gateway.state.traffic.concurrency("mock/gpt-4o-mini")
            assert limiter is not None
            return limiter.queued

        threads = [threading.Thread(target=send, args=("holder", "standard", "1000"))]
        threads[0].start()
        mock.wait_for(lambda s: s.in_flight == 1)
        for name, priority, count in (("batch", "batch", 1), ("interactive", "interactive", 2)):
            thread = threading.Thread(target=send, args=(name, priority, "0"))
            thread.start()
            threads.append(thread)
            while queued() < count:  # the request reaches the limiter's queue
                threading.Event().wait(0.01)
        for thread in threads:
            thread.join()
        # The order the upstream was called in is the order the limiter let the
        # requests go (the order their clients saw the answers is a race).
        called = [prompts[r.body["messages"][0]["content"]] for r in mock.requests]
        assert called == ["holder", "interactive", "batch"]
