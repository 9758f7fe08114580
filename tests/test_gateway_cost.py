"""Cost in the gateway, through the openai SDK and raw HTTP against the mock
upstream: usage and cost booked per request (counted locally when the upstream
reports none), savings of cache hits and coalesced calls, budgets that alert,
downgrade and refuse, model selection, and the admin API's spend report."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway_support import chat_body, gateway_config, sdk, unique
from hotpath import ManualClock
from hotpath._background import BackgroundServer
from hotpath.cost import BudgetRule, PriceTable, Usage, Weights
from hotpath.gateway import Gateway, GatewayConfig, ModelRoute, hash_key
from hotpath.gateway._cost_config import AdminConfig, CostConfig, SelectConfig
from hotpath.providers.mock import Latency, MockConfig, MockUpstream

ADMIN = "admin-secret-key"
ADMIN_HEADERS = {"authorization": f"Bearer {ADMIN}"}
MINI = PriceTable.default().lookup("gpt-4o-mini")
BIG = PriceTable.default().lookup("gpt-4o")


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream(MockConfig(completion_tokens=8)) as upstream:
        yield upstream


def serve(config: GatewayConfig, clock: ManualClock | None = None) -> BackgroundServer:
    return BackgroundServer(Gateway(config, clock=clock))


def admin(**cost: Any) -> dict[str, Any]:
    """Options of a gateway with the admin API on and ``cost`` settings."""
    keys = Path(tempfile.mkdtemp(prefix="hp-keys-")) / "keys.db"
    return {
        "admin": AdminConfig(key_sha256=hash_key(ADMIN), keys_store=f"sqlite:///{keys}"),
        "cost": CostConfig(store="memory://", **cost),
    }


def spend(server: BackgroundServer, **query: str) -> dict[str, Any]:
    response = httpx.get(f"{server.base}/admin/spend", params=query, headers=ADMIN_HEADERS)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def post(server: BackgroundServer, body: dict[str, Any], **headers: str) -> httpx.Response:
    with httpx.Client(base_url=server.base, timeout=30) as http:
        return http.post("/v1/chat/completions", json=body, headers=headers)


def test_usage_and_cost_are_booked_by_model_and_deployment(mock: MockUpstream) -> None:
    assert MINI is not None
    config = gateway_config(mock.url, **admin())
    with serve(config) as server:
        client = sdk(server)
        done = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": unique()}]
        )
        assert done.usage is not None
        report = spend(server, by="model,deployment")
    [row] = report["data"]
    assert row["group"] == {"model": "gpt-4o-mini", "deployment": "mock/gpt-4o-mini"}
    assert row["requests"] == 1
    assert row["prompt_tokens"] == done.usage.prompt_tokens
    assert row["completion_tokens"] == done.usage.completion_tokens
    expected = MINI.cost(Usage(done.usage.prompt_tokens, done.usage.completion_tokens))
    assert row["cost_usd"] == pytest.approx(expected)
    assert row["estimated"] == 0
    assert report["total"]["cost_usd"] == pytest.approx(expected)
    assert report["prices_date"] == PriceTable.default().date


@pytest.mark.parametrize("stream", [False, True])
def test_usage_is_counted_when_the_upstream_reports_none(mock: MockUpstream, stream: bool) -> None:
    config = gateway_config(mock.url, **admin())
    body = chat_body(unique(), stream=stream)
    with serve(config) as server:
        reported = post(server, chat_body(body["messages"][0]["content"]))
        assert reported.status_code == 200
        counted = post(
            server,
            {**body, "model": "gpt-4o-mini"},
            **{"x-mock-usage": "omit", "cache-control": "no-store"},
        )
        assert counted.status_code == 200
        report = spend(server, by="model")
    [row] = report["data"]
    usage = reported.json()["usage"]
    assert row["requests"] == 2
    assert row["estimated"] == 1
    # bpe-openai counts what OpenAI bills: the same prompt and answer as reported.
    assert row["prompt_tokens"] == 2 * usage["prompt_tokens"]
    assert row["completion_tokens"] == 2 * usage["completion_tokens"]


def test_cache_hits_and_coalesced_calls_book_what_they_saved(mock: MockUpstream) -> None:
    config = gateway_config(mock.url, **admin())
    body = chat_body(unique())
    with serve(config) as server:
        first = post(server, body)
        second = post(server, body)
        assert second.headers["x-hotpath-cache"] == "hit"
        report = spend(server, by="model")
    [row] = report["data"]
    assert row["requests"] == 1
    assert row["cache_hits"] == 1
    assert row["saved_usd"] == pytest.approx(row["cost_usd"])
    assert row["saved_latency_s"] > 0
    assert first.json()["usage"]["prompt_tokens"] == row["prompt_tokens"]


def test_unknown_model_cost_is_unknown_not_guessed(mock: MockUpstream) -> None:
    config = gateway_config(mock.url, **admin())
    with serve(config) as server:
        response = post(server, {**chat_body(unique()), "model": "house-model-7b"})
        assert response.status_code == 200
        [row] = spend(server)["data"]
    assert row["group"] == {"model": "house-model-7b"}
    assert row["unknown_cost"] == 1
    assert row["cost_usd"] == 0


def test_spend_report_as_table_and_errors(mock: MockUpstream) -> None:
    config = gateway_config(mock.url, **admin())
    with serve(config) as server:
        post(server, chat_body(unique()))
        table = httpx.get(
            f"{server.base}/admin/spend",
            params={"by": "tenant,model", "format": "table"},
            headers=ADMIN_HEADERS,
        )
        bad = httpx.get(
            f"{server.base}/admin/spend", params={"by": "colour"}, headers=ADMIN_HEADERS
        )
        day = httpx.get(
            f"{server.base}/admin/spend", params={"since": "yesterday"}, headers=ADMIN_HEADERS
        )
        anonymous = httpx.get(f"{server.base}/admin/spend")
        wrong = httpx.get(f"{server.base}/admin/spend", headers={"authorization": "Bearer nope"})
    assert table.status_code == 200
    assert table.headers["content-type"].startswith("text/plain")
    assert "gpt-4o-mini" in table.text
    assert "total" in table.text
    assert bad.status_code == 400
    assert "colour" in bad.json()["error"]["message"]
    assert day.status_code == 400
    assert "yesterday" in day.json()["error"]["message"]
    assert anonymous.status_code == 401
    assert wrong.status_code == 401


def test_admin_api_is_off_without_an_admin_key(mock: MockUpstream) -> None:
    with serve(gateway_config(mock.url)) as server:
        response = httpx.get(f"{server.base}/admin/spend", headers=ADMIN_HEADERS)
    assert response.status_code == 404
    assert "admin API is off" in response.json()["error"]["message"]


# -- budgets ---------------------------------------------------------------------------


class Hook:
    """A webhook receiver: a real HTTP server that keeps what it is sent."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.arrived = threading.Condition()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers["content-length"])
                with hook.arrived:
                    hook.received.append(orjson.loads(self.rfile.read(size)))
                    hook.arrived.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int) -> list[dict[str, Any]]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.received) >= count, timeout=10)
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_budget_alerts_downgrades_and_refuses(mock: MockUpstream) -> None:
    hook = Hook()
    # A call of ~10 prompt tokens and 8 completion tokens (max_tokens 8, what the
    # mock answers) costs and reserves about $0.0001 on gpt-4o, 16x less on mini.
    rule = BudgetRule(scope="tenant", limit_usd=0.001, period="day", downgrade_to="gpt-4o-mini")
    options = admin(budgets=(rule,), alert_webhook=hook.url)
    models = {"gpt-4o": ModelRoute(upstream="mock"), "gpt-4o-mini": ModelRoute(upstream="mock")}
    config = gateway_config(mock.url, models=models, **options)
    try:
        with serve(config) as server:
            outcomes: list[httpx.Response] = []
            for _ in range(30):
                body = {**chat_body(unique()), "model": "gpt-4o", "max_tokens": 8}
                outcomes.append(post(server, body))
                if outcomes[-1].headers.get("x-hotpath-budget") == "downgraded":
                    break
            # Even on the cheaper model, this one's reservation would cross the budget.
            big = {**chat_body(unique()), "model": "gpt-4o", "max_tokens": 20_000}
            refused = post(server, big)
            statuses = httpx.get(
                f"{server.base}/admin/budgets", params={"tenant": ""}, headers=ADMIN_HEADERS
            ).json()["data"]
            events = hook.wait_for(3)
    finally:
        hook.close()
    assert all(r.status_code == 200 for r in outcomes)
    full, downgraded = outcomes[:-1], outcomes[-1]
    assert all(r.json()["model"] == "gpt-4o" for r in full)
    assert "x-hotpath-model" not in full[0].headers
    assert downgraded.headers["x-hotpath-budget"] == "downgraded"
    assert downgraded.headers["x-hotpath-model"] == "gpt-4o-mini"
    assert downgraded.json()["model"] == "gpt-4o-mini"
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert error["type"] == "insufficient_quota"
    assert "budget tenant::day of $0.001 would be crossed" in error["message"]
    assert "resets at" in error["message"]
    assert refused.headers["x-hotpath-budget"] == "tenant::day"
    assert int(refused.headers["retry-after"]) >= 1
    [status] = statuses
    assert status["spent_usd"] <= 0.001
    assert status["spent_usd"] >= 0.00095 - 0.0002
    assert [e["event"] for e in events] == ["budget.alert", "budget.downgrade", "budget.exhausted"]
    alert = events[0]
    assert alert["budget"] == "tenant::day"
    assert alert["limit_usd"] == 0.001
    assert alert["ratio"] >= 0.8
    assert alert["reset_at"].endswith("T00:00:00Z")


def test_select_route_scores_and_tiers(mock: MockUpstream) -> None:
    models = {
        "gpt-4o": ModelRoute(upstream="mock", quality=0.9),
        "gpt-4o-mini": ModelRoute(upstream="mock", quality=0.6),
        "auto": ModelRoute(select=SelectConfig(candidates=("gpt-4o", "gpt-4o-mini"))),
    }
    config = gateway_config(mock.url, models=models)
    with serve(config) as server:
        default = post(server, {**chat_body(unique()), "model": "auto"})
        cheap = post(
            server, {**chat_body(unique()), "model": "auto"}, **{"x-hotpath-tier": "cheap"}
        )
        bad = post(server, {**chat_body(unique()), "model": "auto"}, **{"x-hotpath-tier": "gold"})
    assert default.status_code == 200
    assert default.headers["x-hotpath-selected"] == "score"
    assert default.headers["x-hotpath-model"] in ("gpt-4o", "gpt-4o-mini")
    assert cheap.headers["x-hotpath-model"] == "gpt-4o-mini"
    assert cheap.headers["x-hotpath-selected"] == "cheap"
    assert cheap.json()["model"] == "gpt-4o-mini"
    assert bad.status_code == 400
    assert "x-hotpath-tier" in bad.json()["error"]["message"]
    assert "'gold'" in bad.json()["error"]["message"]


def test_select_route_sends_long_prompts_to_the_long_window_model(mock: MockUpstream) -> None:
    select = SelectConfig(
        candidates=("gpt-4o", "gpt-4o-mini"),
        long_prompt_tokens=50,
        long_prompt_model="gpt-4o",
        weights=Weights(cost=1.0, quality=0.0, speed=0.0),
    )
    models = {
        "gpt-4o": ModelRoute(upstream="mock", quality=0.9),
        "gpt-4o-mini": ModelRoute(upstream="mock", quality=0.6),
        "auto": ModelRoute(select=select),
    }
    with serve(gateway_config(mock.url, models=models)) as server:
        short = post(server, {**chat_body(unique()), "model": "auto"})
        long = post(server, {**chat_body(unique() + " word" * 80), "model": "auto"})
    assert short.headers["x-hotpath-model"] == "gpt-4o-mini"
    assert short.headers["x-hotpath-selected"] == "score"
    assert long.headers["x-hotpath-model"] == "gpt-4o"
    assert long.headers["x-hotpath-selected"] == "long_prompt"


def test_coalesced_requests_book_their_saving() -> None:
    with MockUpstream(MockConfig(completion_tokens=8, ttft=Latency.constant(0.3))) as slow:
        config = gateway_config(slow.url, **admin())
        body = chat_body(unique())
        with serve(config) as server, ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: post(server, body), range(4)))
            report = spend(server)
    assert [r.status_code for r in answers] == [200] * 4
    assert slow.stats().chat_requests == 1
    [row] = report["data"]
    assert row["requests"] == 1
    assert row["coalesced"] + row["cache_hits"] == 3
    assert row["saved_usd"] == pytest.approx(3 * row["cost_usd"])


def test_embeddings_are_booked_and_hits_saved(mock: MockUpstream) -> None:
    config = gateway_config(mock.url, **admin())
    price = PriceTable.default().lookup("text-embedding-3-small")
    assert price is not None
    texts = [unique("a"), unique("b")]
    with serve(config) as server:
        client = sdk(server)
        first = client.embeddings.create(model="text-embedding-3-small", input=texts)
        client.embeddings.create(model="text-embedding-3-small", input=texts[:1])
        [row] = spend(server)["data"]
    assert row["requests"] == 1
    assert row["prompt_tokens"] == first.usage.prompt_tokens
    assert row["cost_usd"] == pytest.approx(first.usage.prompt_tokens * price.input / 1e6)
    assert row["cache_hits"] == 1
    assert row["saved_usd"] > 0


def test_admin_keys_create_authenticate_limit_and_revoke(mock: MockUpstream) -> None:
    config = gateway_config(mock.url, **admin())
    with serve(config) as server, httpx.Client(base_url=server.base) as http:
        # No key yet: the gateway is open, as with no [[keys]].
        assert post(server, chat_body(unique())).status_code == 200
        made = http.post(
            "/admin/keys",
            json={"name": "ci-bot", "tenant": "acme", "rpm": 2, "budget_usd": 5},
            headers=ADMIN_HEADERS,
        )
        assert made.status_code == 201
        secret = made.json()["key"]
        assert secret.startswith("hp-")
        # Now a key is needed.
        assert post(server, chat_body(unique())).status_code == 401
        bearer = {"authorization": f"Bearer {secret}"}
        assert post(server, chat_body(unique()), **bearer).status_code == 200
        assert post(server, chat_body(unique()), **bearer).status_code == 200
        limited = post(server, chat_body(unique()), **bearer)
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limit_exceeded"
        listed = http.get("/admin/keys", headers=ADMIN_HEADERS).json()["data"]
        assert [k["name"] for k in listed] == ["ci-bot"]
        assert listed[0]["tenant"] == "acme"
        assert listed[0]["rpm"] == 2
        assert listed[0]["budget_usd"] == 5
        assert secret not in str(listed)
        assert "sha256" not in listed[0]
        again = http.post("/admin/keys", json={"name": "ci-bot"}, headers=ADMIN_HEADERS)
        assert again.status_code == 409
        unknown = http.post(
            "/admin/keys", json={"name": "x", "colour": "red"}, headers=ADMIN_HEADERS
        )
        assert unknown.status_code == 400
        assert "'colour'" in unknown.json()["error"]["message"]
        bad = http.post("/admin/keys", json={"name": "x", "rpm": 0}, headers=ADMIN_HEADERS)
        assert bad.status_code == 400
        assert "rpm" in bad.json()["error"]["message"]
        budgets = http.get(
            "/admin/budgets", params={"key": "ci-bot", "tenant": "acme"}, headers=ADMIN_HEADERS
        ).json()["data"]
        assert [b["budget"] for b in budgets] == ["key:ci-bot:month"]
        report = http.get("/admin/spend", params={"by": "key,tenant"}, headers=ADMIN_HEADERS)
        groups = [row["group"] for row in report.json()["data"]]
        assert {"key": "ci-bot", "tenant": "acme"} in groups
        revoked = http.delete("/admin/keys/ci-bot", headers=ADMIN_HEADERS)
        assert revoked.status_code == 200
        assert revoked.json()["revoked"] is True
        assert post(server, chat_body(unique()), **bearer).status_code == 401
        assert http.delete("/admin/keys/nobody", headers=ADMIN_HEADERS).status_code == 404
        assert http.delete("/admin/keys/ci-bot").status_code == 401


def test_a_keys_budget_refuses_with_its_name(mock: MockUpstream) -> None:
    config = gateway_config(mock.url, **admin())
    with serve(config) as server, httpx.Client(base_url=server.base) as http:
        made = http.post(
            "/admin/keys", json={"name": "tiny", "budget_usd": 1e-6}, headers=ADMIN_HEADERS
        )
        bearer = {"authorization": f"Bearer {made.json()['key']}"}
        refused = post(server, chat_body(unique()), **bearer)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "budget_exceeded"
    assert refused.headers["x-hotpath-budget"] == "key:tiny:month"


def test_budget_store_down_fails_open_visibly_or_closed(mock: MockUpstream) -> None:
    rule = BudgetRule(scope="global", limit_usd=10.0)
    down = "redis://127.0.0.1:1/0"
    open_config = gateway_config(
        mock.url, cost=CostConfig(store="memory://", budgets=(rule,), budget_store=down)
    )
    with serve(open_config) as server:
        assert post(server, chat_body(unique())).status_code == 200
        text = httpx.get(f"{server.base}/metrics").text
    assert 'hotpath_cost_store_errors_total{store="budget"}' in text
    closed_config = gateway_config(
        mock.url,
        cost=CostConfig(
            store="memory://", budgets=(rule,), budget_store=down, on_redis_error="closed"
        ),
    )
    with serve(closed_config) as server:
        refused = post(server, chat_body(unique()))
    assert refused.status_code == 503
    assert "budget store is unavailable" in refused.json()["error"]["message"]


def test_budgets_in_the_process_start_from_the_booked_usage(
    mock: MockUpstream, tmp_path: Path
) -> None:
    """A restart does not hand out a fresh budget: the SQLite usage ledger seeds it."""
    rule = BudgetRule(scope="tenant", limit_usd=0.0002, period="month")
    cost = CostConfig(store=f"sqlite:///{tmp_path / 'usage.db'}", budgets=(rule,))
    config = gateway_config(mock.url, cost=cost)
    with serve(config) as server:
        answered = 0
        for _ in range(10):
            response = post(server, {**chat_body(unique()), "model": "gpt-4o", "max_tokens": 8})
            if response.status_code != 200:
                break
            answered += 1
    assert answered >= 1
    assert response.status_code == 429
    with serve(config) as server:
        again = post(server, {**chat_body(unique()), "model": "gpt-4o", "max_tokens": 8})
    assert again.status_code == 429
    assert again.json()["error"]["code"] == "budget_exceeded"
