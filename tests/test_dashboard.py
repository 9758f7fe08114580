"""The live dashboard: the sampled series against the load that made them and the
admin spend report, the admin-key and session-cookie checks, the page rendered
by a headless Chromium, and the Grafana dashboard's queries against the metric
families the gateway exports.

``python tests/test_dashboard.py docs/dashboard.png`` renders the screenshot of
docs/dashboard.md (two minutes of mixed traffic, a failing deployment included).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chromium_support import capture, chromium_binary
from gateway_support import chat_body, gateway_config, unique
from hotpath import ManualClock
from hotpath._background import BackgroundServer
from hotpath.gateway import ConcurrencyConfig, Gateway, GatewayConfig, TrafficConfig, hash_key
from hotpath.gateway._cost_config import AdminConfig, CostConfig
from hotpath.gateway._dashboard import DashboardPoint, DashboardSampler
from hotpath.gateway._dashboard_series import Snapshot, point_between, quantile
from hotpath.gateway._dashboard_session import COOKIE, SECRET_FILE, Sessions, load_secret
from hotpath.providers.mock import MockConfig, MockUpstream
from hotpath.traffic._breaker import BreakerConfig
from hotpath.traffic._retry import RetryPolicy
from serve_support import free_port

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "sk-admin-7f3c9e21b04d5a68"
BEARER = {"authorization": f"Bearer {ADMIN}"}
HTML = {"accept": "text/html,application/xhtml+xml"}
TITLES = (
    "Request rate",
    "Latency",
    "Time to first token",
    "Cache lookups by tier",
    "Tokens billed upstream",
    "Spent and saved, per minute",
    "Errors by kind",
    "Circuit breakers",
    "Concurrency limits",
)


class DashboardGateway(Gateway):
    """A gateway with the dashboard's routes and its sampler, wired as ``_app``
    wires them."""

    def __init__(self, config: GatewayConfig, *, interval: float = 0.2, **options: Any) -> None:
        super().__init__(config, **options)
        self.dashboard = DashboardSampler(self.state, interval=interval)
        self._routes[("GET", "/dashboard")] = self.dashboard.page
        self._routes[("POST", "/dashboard")] = self.dashboard.sign_in
        self._routes[("GET", "/dashboard/events")] = self.dashboard.events
        self._paths = {path for _, path in self._routes}

    async def start(self) -> None:
        await super().start()
        await self.dashboard.start()

    async def aclose(self) -> None:
        await self.dashboard.aclose()
        await super().aclose()


def admin_options(**cost: Any) -> dict[str, Any]:
    keys = Path(tempfile.mkdtemp(prefix="hp-dash-keys-")) / "keys.db"
    return {
        "admin": AdminConfig(key_sha256=hash_key(ADMIN), keys_store=f"sqlite:///{keys}"),
        "cost": CostConfig(store="memory://", **cost),
    }


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream(MockConfig(completion_tokens=12)) as upstream:
        yield upstream


@pytest.fixture
def served(mock: MockUpstream) -> Iterator[tuple[BackgroundServer, DashboardGateway]]:
    gateway = DashboardGateway(gateway_config(mock.url, **admin_options()))
    with BackgroundServer(gateway) as server:
        yield server, gateway


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for the dashboard's sampler")
        time.sleep(0.05)


def settled(gateway: DashboardGateway, requests: float) -> list[DashboardPoint]:
    """The points once the sampler has seen ``requests`` API requests and one more
    interval has passed (nothing left between two readings)."""

    def seen() -> bool:
        points = gateway.dashboard.points()
        return bool(points) and points[-1].total["requests"] >= requests

    wait_for(seen)
    count = len(gateway.dashboard.points())
    wait_for(lambda: len(gateway.dashboard.points()) > count)
    return gateway.dashboard.points()


# -- the series ----------------------------------------------------------------------


def test_sampled_series_match_the_load_and_the_spend_report(
    served: tuple[BackgroundServer, DashboardGateway],
) -> None:
    """Request rate, hits by tier, misses, tokens, cost and savings summed over the
    points equal the load driven and the admin API's spend report."""
    server, gateway = served
    prompts = [unique("dash") for _ in range(12)]
    with httpx.Client(base_url=server.base, timeout=30) as http:
        for rounds in range(2):  # the second round is all hits
            for i, text in enumerate(prompts):
                body = chat_body(text, stream=i % 2 == 0, temperature=0)
                answer = http.post("/v1/chat/completions", json=body)
                assert answer.status_code == 200
                assert answer.headers["x-hotpath-cache"] == ("hit" if rounds else "miss")
        points = settled(gateway, 24)
        report = http.get("/admin/spend", headers=BEARER).json()

    total = points[-1].total
    assert total["requests"] == 24
    assert sum(p.rps * p.dt for p in points) == pytest.approx(24)
    assert max(p.rps for p in points) > 0
    assert sum(sum(p.hits.values()) * p.dt for p in points) == pytest.approx(12)
    assert {tier for p in points for tier in p.hits} == {"memory"}
    assert sum(p.misses * p.dt for p in points) == pytest.approx(12)
    assert total["hits"] / total["lookups"] == pytest.approx(0.5)
    spent = report["total"]
    assert spent["cost_usd"] > 0
    assert total["cost"] == pytest.approx(spent["cost_usd"], rel=1e-9)
    assert sum(p.cost * p.dt for p in points) == pytest.approx(spent["cost_usd"], rel=1e-6)
    assert total["saved"] == pytest.approx(spent["saved_usd"], rel=1e-9)
    assert total["saved"] > 0
    billed = spent["prompt_tokens"] + spent["completion_tokens"]
    assert total["tokens"] == billed
    assert sum(sum(p.tokens.values()) * p.dt for p in points) == pytest.approx(billed)
    busy = [p for p in points if p.rps > 0]
    assert all(p.latency[0] is not None for p in busy)
    assert any(p.ttft[1] is not None for p in busy)
    assert all(p.errors == {} for p in points)
    assert points[-1].breakers == {"mock/gpt-4o-mini": 0.0}
    # The admin report, /metrics and the dashboard itself are not traffic.
    assert all(p.total["requests"] <= 24 for p in points)


def test_errors_are_counted_by_kind(served: tuple[BackgroundServer, DashboardGateway]) -> None:
    server, gateway = served
    with httpx.Client(base_url=server.base, timeout=30) as http:
        for _ in range(3):
            body = chat_body(unique())
            answer = http.post("/v1/chat/completions", json=body, headers={"x-mock-fault": "500"})
            assert answer.status_code == 500
        assert http.post("/v1/chat/completions", content=b"{").status_code == 400
    points = settled(gateway, 4)
    errors: dict[str, float] = {}
    for p in points:
        for kind, rate in p.errors.items():
            errors[kind] = errors.get(kind, 0.0) + rate * p.dt
    assert errors == pytest.approx(
        {"HTTP 500": 3.0, "HTTP 400": 1.0, "upstream: error status": 3.0}
    )
    assert points[-1].total["errors"] == 4


def test_quantiles_interpolate_within_buckets_like_prometheus() -> None:
    buckets = {0.1: 50.0, 0.5: 90.0, 1.0: 100.0, float("inf"): 100.0}
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.7, buckets) == pytest.approx(0.3)
    assert quantile(0.95, buckets) == pytest.approx(0.75)
    assert quantile(0.99, {0.1: 1.0, float("inf"): 10.0}) == pytest.approx(0.1)
    assert quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None
    assert quantile(0.5, {}) is None


def test_a_point_is_the_rate_between_two_snapshots() -> None:
    before = Snapshot(requests=10, hits={"memory": 4}, misses=6, cost=1.0, in_flight=3)
    after = Snapshot(
        requests=30,
        hits={"memory": 14, "redis": 2},
        misses=10,
        cost=1.5,
        in_flight=3,
        latency={0.01: 15.0, 0.1: 20.0, float("inf"): 20.0},
        statuses={"HTTP 429": 4},
        breakers={"a": 1.0},
    )
    point = point_between(before, after, seq=7, t=100.0, dt=2.0)
    assert point.rps == 10
    assert point.hits == {"memory": 5, "redis": 1}
    assert point.misses == 2
    assert point.cost == 0.25
    assert point.in_flight == 3
    assert point.latency[0] == pytest.approx(0.01 * 10 / 15)
    assert point.errors == {"HTTP 429": 2}
    assert point.breakers == {"a": 1.0}
    assert point.total["lookups"] == 26
    # A counter that went down (a worker restarted) counts as no change.
    again = point_between(after, before, seq=8, t=102.0, dt=2.0)
    assert again.rps == 0 and again.hits == {} and again.cost == 0


def test_multiprocess_view_sums_every_worker(tmp_path: Path, monkeypatch: Any) -> None:
    """With PROMETHEUS_MULTIPROC_DIR the sampler reads the files every worker
    writes, as /metrics does, and shares its session secret through them."""
    script = (
        "from hotpath.gateway._metrics import GatewayMetrics\n"
        "m = GatewayMetrics()\n"
        "m.child(m.requests, '/v1/chat/completions', '200').inc(5)\n"
        "m.child(m.cache, '/v1/chat/completions', 'hit', 'memory').inc(2)\n"
        "m.child(m.cost, 'gpt-4o-mini').inc(0.25)\n"
        "m.child(m.breaker_state, 'mock/gpt-4o-mini').set(1)\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    gateway = Gateway(gateway_config("http://127.0.0.1:9/v1", **admin_options()))
    dashboard = DashboardSampler(gateway.state)
    # Every worker reads every worker's files: with no dashboard open, less often.
    assert (dashboard.interval, dashboard.idle_interval) == (1.0, 10.0)

    async def read() -> DashboardPoint | None:
        await dashboard.start()
        try:
            return dashboard.sample()
        finally:
            await dashboard.aclose()

    point = asyncio.run(read())
    assert point is not None
    assert point.total["requests"] == 10
    assert point.total["hits"] == 4
    assert point.total["cost"] == pytest.approx(0.5)
    assert point.breakers == {"mock/gpt-4o-mini": 1.0}
    secret = tmp_path / SECRET_FILE
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert load_secret(str(tmp_path)) == secret.read_bytes()


def test_sampler_rejects_bad_settings(mock: MockUpstream) -> None:
    state = Gateway(gateway_config(mock.url)).state
    with pytest.raises(ValueError, match=r"interval must be a number > 0 seconds, got 0"):
        DashboardSampler(state, interval=0)
    with pytest.raises(ValueError, match=r"history must be an int >= 2, got 1"):
        DashboardSampler(state, history=1)
    with pytest.raises(ValueError, match=r"idle_interval must be a number > 0 seconds, got nan"):
        DashboardSampler(state, idle_interval=float("nan"))
    sampler = DashboardSampler(state, interval=0.5)
    assert sampler.idle_interval == 0.5  # one process: always every interval


# -- who may see it ------------------------------------------------------------------


def test_the_dashboard_needs_the_admin_key(
    served: tuple[BackgroundServer, DashboardGateway],
) -> None:
    server, _ = served
    with httpx.Client(base_url=server.base, timeout=10) as http:
        answer = http.get("/dashboard")
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "invalid_api_key"
        assert http.get("/dashboard/events").status_code == 401
        assert http.get("/dashboard", headers={"authorization": "Bearer nope"}).status_code == 401
        # A browser gets a sign-in form, still a 401, that posts the key in its body.
        form = http.get("/dashboard", headers=HTML)
        assert form.status_code == 401
        assert form.headers["content-type"].startswith("text/html")
        assert 'type="password"' in form.text
        assert 'method="post"' in form.text
        assert "<script" not in form.text  # a plain form: it works with scripts off
        wrong = http.post("/dashboard", data={"key": "nope"}, headers=HTML)
        assert wrong.status_code == 401 and "That is not the admin key." in wrong.text
        assert COOKIE not in wrong.headers.get("set-cookie", "")
        # The key is never taken from a URL (proxies log them, browsers keep them).
        assert http.get("/dashboard", params={"key": ADMIN}).status_code == 401
        assert http.get("/dashboard/events", params={"key": ADMIN}).status_code == 401
        assert COOKIE not in http.cookies
        # A sign-in that is not a form is refused, naming what it got.
        answer = http.post("/dashboard", json={"key": ADMIN})
        assert answer.status_code == 415
        assert "application/json" in answer.json()["error"]["message"]


def test_the_key_is_traded_for_a_session_cookie_that_is_not_the_key(
    served: tuple[BackgroundServer, DashboardGateway],
) -> None:
    server, _ = served
    with httpx.Client(base_url=server.base, timeout=10) as http:
        signed_in = http.post("/dashboard", data={"key": ADMIN}, headers=HTML)
        assert signed_in.status_code == 303
        assert signed_in.headers["location"] == "dashboard"
        cookie = signed_in.headers["set-cookie"]
        page = http.get("/dashboard")  # the client keeps the cookie, as a browser does
        assert page.status_code == 200
        attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
        assert {"httponly", "samesite", "path", "max-age"} <= attributes
        assert "SameSite=Strict" in cookie and "Path=/dashboard" in cookie
        token = cookie.split(";")[0].split("=", 1)[1]
        assert ADMIN not in token and hash_key(ADMIN) not in token
        assert ADMIN[3:12] not in cookie
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "unsafe-inline" not in policy
        assert page.headers["cache-control"] == "no-store"
        for title in TITLES[:3]:
            assert title in page.text  # the script that builds the panels names them

    with httpx.Client(base_url=server.base, timeout=10, cookies={COOKIE: token}) as browser:
        assert browser.get("/dashboard").status_code == 200
        # a proxy's basic auth in front of the gateway leaves the cookie in charge
        assert browser.get("/dashboard", auth=("proxy-user", "pw")).status_code == 200
        with browser.stream("GET", "/dashboard/events") as events:
            assert events.status_code == 200
            assert events.headers["content-type"].startswith("text/event-stream")
            head = b""
            for chunk in events.iter_bytes():
                head += chunk
                if b"event: history" in head and head.endswith(b"\n\n"):
                    break
        history = json.loads(head.split(b"event: history\ndata: ", 1)[1])
        assert history["meta"]["scope"] == "this process"
        assert isinstance(history["points"], list)

    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for bad in (forged, ADMIN, hash_key(ADMIN), ""):
        with httpx.Client(base_url=server.base, timeout=10, cookies={COOKIE: bad}) as http:
            assert http.get("/dashboard").status_code == 401
            assert http.get("/dashboard/events").status_code == 401

    # The admin API's header works for scripts, and also issues a cookie.
    with httpx.Client(base_url=server.base, timeout=10) as http:
        answer = http.get("/dashboard", headers=BEARER)
        assert answer.status_code == 200 and COOKIE in answer.headers["set-cookie"]
        with http.stream("GET", "/dashboard/events", headers=BEARER) as events:
            assert events.status_code == 200


def first_event(events: httpx.Response) -> bytes:
    """The stream's opening: the retry hint and, unless resumed, the history."""
    head = b""
    for chunk in events.iter_bytes():
        head += chunk
        if head.endswith(b"\n\n") and (b"data: " in head or head.count(b"\n\n") >= 2):
            return head
    return head


def test_the_page_brings_the_points_and_the_stream_carries_on_after_them(
    served: tuple[BackgroundServer, DashboardGateway],
) -> None:
    server, gateway = served
    with httpx.Client(base_url=server.base, timeout=30, headers=BEARER) as http:
        for _ in range(3):
            http.post("/v1/chat/completions", json=chat_body(unique()))
        settled(gateway, 3)
        page = http.get("/dashboard").text
        found = re.search(r'<script id="history" type="application/json">(.*?)</script>', page)
        assert found is not None
        history = json.loads(found.group(1))
        assert history["points"][-1]["total"]["requests"] == 3
        run, seq = history["meta"]["run"], history["points"][-1]["seq"]
        with http.stream("GET", "/dashboard/events", params={"after": f"{run}-{seq}"}) as events:
            opening = first_event(events)
            # an open dashboard is not a request in flight: the scrape itself is
            assert "hotpath_in_flight_requests 1.0" in http.get("/metrics").text
        assert b"event: history" not in opening
        assert b"data: " in opening and f"id: {run}-{seq + 1}".encode() in opening
        # Another run's ids (a restarted gateway) get the whole history again.
        stale = {"last-event-id": f"00000000-{seq}"}
        with http.stream("GET", "/dashboard/events", headers=stale) as events:
            assert b"event: history" in first_event(events)


def test_label_values_cannot_break_out_of_the_page(
    served: tuple[BackgroundServer, DashboardGateway],
) -> None:
    """Model and deployment names come from clients: inside the page's JSON they
    cannot close its script element."""
    server, gateway = served
    evil = "m/</script><script>alert(1)</script>"
    metrics = gateway.state.metrics
    metrics.child(metrics.breaker_state, evil).set(1)
    wait_for(lambda: any(evil in p.breakers for p in gateway.dashboard.points()))
    page = httpx.get(f"{server.base}/dashboard", headers=BEARER).text
    assert "<script>alert" not in page
    found = re.search(r'<script id="history" type="application/json">(.*?)</script>', page)
    assert found is not None
    assert evil in json.loads(found.group(1))["points"][-1]["breakers"]


def test_the_dashboard_is_off_without_an_admin_key(mock: MockUpstream) -> None:
    with BackgroundServer(DashboardGateway(gateway_config(mock.url))) as server:
        for path in ("/dashboard", "/dashboard/events"):
            answer = httpx.get(f"{server.base}{path}", headers=BEARER)
            assert answer.status_code == 404


def test_sessions_expire_and_bind_the_admin_key() -> None:
    clock = ManualClock()
    secret = os.urandom(32)
    sessions = Sessions(hash_key(ADMIN), secret, clock=clock, lifetime=60)
    token = sessions.issue()
    assert sessions.expiry(token) == pytest.approx(clock.now() + 60, abs=1)
    # Another worker with the same secret accepts it; a new admin key does not.
    assert Sessions(hash_key(ADMIN), secret, clock=clock).expiry(token) is not None
    assert Sessions(hash_key("other"), secret, clock=clock).expiry(token) is None
    assert Sessions(hash_key(ADMIN), os.urandom(32), clock=clock).expiry(token) is None
    version, expiry, mac = token.split(".")
    assert sessions.expiry(f"{version}.{int(expiry) + 3600}.{mac}") is None
    clock.advance(61)
    assert sessions.expiry(token) is None
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Sessions(hash_key(ADMIN), b"short", clock=clock)


def test_the_stream_ends_when_the_session_does(mock: MockUpstream) -> None:
    clock = ManualClock(start=time.time())
    gateway = DashboardGateway(gateway_config(mock.url, **admin_options()), clock=clock)
    with BackgroundServer(gateway) as server:
        token = httpx.post(f"{server.base}/dashboard", data={"key": ADMIN}).cookies[COOKIE]
        with (
            httpx.Client(base_url=server.base, timeout=10, cookies={COOKIE: token}) as http,
            http.stream("GET", "/dashboard/events") as events,
        ):
            clock.advance(13 * 3600)
            body = b"".join(events.iter_bytes())
        assert body.endswith(b"event: expired\ndata: {}\n\n")


def test_draining_ends_the_streams_and_the_readiness(mock: MockUpstream) -> None:
    """``Gateway.drain`` (what ``hotpath serve`` does on SIGTERM) ends open event
    streams at once and makes /readyz answer 503, while requests are still served."""
    gateway = DashboardGateway(gateway_config(mock.url, **admin_options()))
    with (
        BackgroundServer(gateway) as server,
        httpx.Client(base_url=server.base, timeout=10, headers=BEARER) as http,
    ):
        with http.stream("GET", "/dashboard/events") as events:
            chunks = events.iter_bytes()
            seen = b""
            while b"event: history" not in seen:
                seen += next(chunks)
            server.call(gateway.drain)
            rest = b"".join(chunks)  # ends: the server closed the stream
        assert b"event: history" not in rest
        assert http.get("/readyz").status_code == 503
        answer = http.post("/v1/chat/completions", json=chat_body("still served"))
        assert answer.status_code == 200


# -- in a browser ----------------------------------------------------------------------


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGB(A) bytes of an 8-bit, non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, header = 8, [], b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and color in (2, 6) and interlace == 0, header
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind_ = raw[start]
        line = bytearray(raw[start + 1 : start + 1 + stride])
        if kind_ == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind_ == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev, strict=True))
        elif kind_ == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif kind_ == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, [bytes(r) for r in rows] if bpp == 3 else _rgb(rows)


def _rgb(rows: list[bytes]) -> list[bytes]:
    return [bytes(b for i, b in enumerate(row) if i % 4 != 3) for row in rows]


def drive(base: str, stop: threading.Event, *, pool: int = 20) -> None:
    """Chat requests until ``stop``: a pool of prompts (hits once warm), unique
    ones, streams, and now and then an upstream fault."""
    prompts = [unique("warm") for _ in range(pool)]
    with httpx.Client(base_url=base, timeout=30) as http:
        n = 0
        while not stop.is_set():
            n += 1
            text = prompts[n % pool] if n % 3 else unique()
            headers = {"x-mock-fault": "500"} if n % 17 == 0 else {}
            http.post(
                "/v1/chat/completions",
                json=chat_body(text, stream=n % 2 == 0, temperature=0),
                headers=headers,
            )
            time.sleep(0.01)


@pytest.mark.slow
def test_the_page_renders_its_charts_in_headless_chromium(
    served: tuple[BackgroundServer, DashboardGateway], tmp_path: Path
) -> None:
    """Under load, in a real browser: the sign-in form is filled and sent; the page
    draws every chart from the points it came with, opens the event stream with its
    session cookie and draws the points that then arrive; no script error or CSP
    refusal; the screenshot is far from blank."""
    binary = chromium_binary()
    server, gateway = served
    stop = threading.Event()
    load = threading.Thread(target=drive, args=(server.base, stop))
    load.start()
    try:
        wait_for(lambda: len(gateway.dashboard.points()) >= 8, timeout=30)
        held = len(gateway.dashboard.points())
        # Ready once the stream is open and has brought a point the page lacked.
        ready = (
            "document.getElementById('status').dataset.state === 'live'"
            f" && Number(document.body.dataset.points) > {held}"
        )
        url = f"{server.base}/dashboard"
        shot = asyncio.run(
            capture(url, size=(1400, 1000), ready=ready, binary=binary, sign_in=ADMIN)
        )
    finally:
        stop.set()
        load.join()
    assert shot.errors == []
    dom = shot.dom
    for title in TITLES:
        assert f"<h2>{title}</h2>" in dom
    assert not re.search(r'<text class="empty"[^>]*>waiting for data', dom)
    segments = [int(n) for n in re.findall(r'data-segments="(\d+)"', dom)]
    assert len(segments) == len(TITLES)
    assert sum(1 for n in segments if n > 0) >= 7  # all but the empty concurrency limits
    out = tmp_path / "dashboard.png"
    out.write_bytes(shot.png)
    width, height, rows = png_pixels(shot.png)
    assert (width, height) == (1400, 1000)
    pixels = [row[i : i + 3] for row in rows[::4] for i in range(0, len(row), 12)]
    background, _ = Counter(pixels).most_common(1)[0]
    differ = sum(1 for px in pixels if px != background)
    assert differ / len(pixels) > 0.25, f"only {differ} of {len(pixels)} pixels drawn"
    assert len(set(pixels)) > 200  # text, lines and fills in many colours


# -- Grafana -----------------------------------------------------------------------------


def exported_names(text: str) -> set[str]:
    """Every series name a /metrics page can hold, from its TYPE lines."""
    names: set[str] = set()
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gauge": ("",),
    }
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            base = name.removesuffix("_total") if kind == "counter" else name
            names.update(base + suffix for suffix in suffixes.get(kind, ("",)))
    return names


def test_grafana_queries_use_only_exported_metrics(
    served: tuple[BackgroundServer, DashboardGateway],
) -> None:
    server, _ = served
    exported = exported_names(httpx.get(f"{server.base}/metrics").text)
    assert "hotpath_requests_total" in exported
    board = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    [variable] = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    expressions: list[str] = []
    titles: list[str] = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        titles.append(panel["title"])
        assert panel["datasource"]["uid"] == "${" + variable["name"] + "}", panel["title"]
        for target in panel["targets"]:
            expressions.append(target["expr"])
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            expressions.append(var["query"]["query"])
    assert len(expressions) >= 12
    used = {name for expr in expressions for name in re.findall(r"\bhotpath_[a-z_]+", expr)}
    assert used, expressions
    assert used <= exported, sorted(used - exported)
    for needed in ("request", "latency", "first token", "hit", "cost", "error", "breaker"):
        assert any(needed in t.lower() for t in titles), needed
    assert board["uid"] and board["schemaVersion"] >= 30


def test_prometheus_config_scrapes_the_gateway() -> None:
    text = (ROOT / "deploy" / "prometheus.yml").read_text()
    assert "metrics_path: /metrics" in text
    assert re.search(r"targets:\s*\[\"[^\"]+:\d+\"", text) or "- targets:" in text


# -- the docs' screenshot ------------------------------------------------------------------


def render_docs_screenshot(out: Path, seconds: float) -> None:  # pragma: no cover - by hand
    """Two deployments behind the gateway, one failing often enough to open its
    breaker; traffic from a separate process; a screenshot at the end."""
    port = free_port()
    mock = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hotpath",
            "mock-upstream",
            "--port",
            str(port),
            "--ttft",
            "lognormal:180ms,0.45",
            "--tps",
            "400",
            "--completion-tokens",
            "60",
            "--fault",
            "429=0.01",
            "--model-fault",
            "gpt-4o:500=0.35",
        ]
    )
    traffic = TrafficConfig(
        retry=RetryPolicy(attempts=1),
        breaker=BreakerConfig(window=20, min_calls=10, failure_rate=0.3, wait=12.0),
        concurrency=ConcurrencyConfig(algorithm="gradient2", initial=16, max_limit=64),
    )
    config = gateway_config(f"http://127.0.0.1:{port}/v1", traffic=traffic, **admin_options())
    gateway = DashboardGateway(config, interval=1.0)
    load = (
        "import asyncio, random, sys, time, uuid, httpx\n"
        "async def one(http, pool):\n"
        "    model = 'gpt-4o' if random.random() < 0.15 else 'gpt-4o-mini'\n"
        "    text = random.choice(pool) if random.random() < 0.55 else uuid.uuid4().hex\n"
        "    body = {'model': model, 'messages': [{'role': 'user', 'content': text}],\n"
        "            'stream': random.random() < 0.5, 'temperature': 0}\n"
        "    try: await http.post('/v1/chat/completions', json=body)\n"
        "    except httpx.HTTPError: pass\n"
        "async def main(base, seconds):\n"
        "    pool = [uuid.uuid4().hex for _ in range(60)]\n"
        "    async with httpx.AsyncClient(base_url=base, timeout=30) as http:\n"
        "        end = time.monotonic() + seconds; tasks = set()\n"
        "        while time.monotonic() < end:\n"
        "            phase = (time.monotonic() % 40) / 40\n"
        "            rate = 25 + 20 * (phase if phase < 0.5 else 1 - phase) * 2\n"
        "            t = asyncio.create_task(one(http, pool)); tasks.add(t)\n"
        "            t.add_done_callback(tasks.discard)\n"
        "            await asyncio.sleep(random.expovariate(rate))\n"
        "asyncio.run(main(sys.argv[1], float(sys.argv[2])))\n"
    )
    try:
        time.sleep(1.5)
        with BackgroundServer(gateway) as server:
            args = [sys.executable, "-c", load, server.base, str(seconds + 30)]
            driver = subprocess.Popen(args)
            time.sleep(seconds)
            url = f"{server.base}/dashboard"
            ready = "document.getElementById('status').dataset.state === 'live'"
            shot = capture(url, size=(1500, 1000), ready=ready, sign_in=ADMIN)
            out.write_bytes(asyncio.run(shot).png)
            driver.kill()
            driver.wait()
    finally:
        mock.kill()
        mock.wait()
    print(f"wrote {out}; sampling cost {gateway.dashboard.stats()}")


if __name__ == "__main__":  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).parent))
    render_docs_screenshot(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 120)
