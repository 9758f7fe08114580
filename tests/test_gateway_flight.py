"""Single-flight: identical requests in flight share one upstream call, live."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway_support import chat_body, gateway_config, running_gateway, unique
from hotpath._background import BackgroundServer
from hotpath.providers.mock import MockConfig, MockUpstream
from redis_server import RedisServer

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream(MockConfig(completion_tokens=12)) as upstream:
        yield upstream


@pytest.fixture
def gateway(mock: MockUpstream) -> Iterator[BackgroundServer]:
    with running_gateway(gateway_config(mock.url)) as server:
        yield server


def events(text: str) -> list[str]:
    return [e for e in text.split("\n\n") if e.strip()]


async def wait_for(condition: Any, deadline: float = 10.0) -> None:
    """Poll ``condition`` (a state change in another thread) until true or the deadline."""
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, "condition not reached"
        await asyncio.sleep(0.01)


async def test_identical_concurrent_requests_make_one_upstream_call(
    gateway: BackgroundServer, mock: MockUpstream
) -> None:
    text = unique()
    before = mock.stats().chat_requests
    slow = {"x-mock-ttft-ms": "300"}
    async with httpx.AsyncClient(base_url=gateway.base, timeout=30) as http:
        responses = await asyncio.gather(
            *[
                http.post(CHAT, json=chat_body(text, stream=i % 2 == 0), headers=slow)
                for i in range(20)
            ]
        )
    assert mock.stats().chat_requests - before == 1
    assert all(r.status_code == 200 for r in responses)
    coalesced = [r.headers.get("x-hotpath-coalesced") for r in responses]
    assert coalesced.count("true") == 19
    streamed = {r.text for i, r in enumerate(responses) if i % 2 == 0}
    whole = {r.text for i, r in enumerate(responses) if i % 2 == 1}
    assert len(streamed) == 1
    assert len(whole) == 1


async def test_a_joiner_gets_chunks_live_not_at_the_end(gateway: BackgroundServer) -> None:
    body = chat_body(unique(), stream=True)
    slow = {"x-mock-tps": "20"}  # 12 tokens over about 600 ms
    async with (
        httpx.AsyncClient(base_url=gateway.base, timeout=30) as http,
        http.stream("POST", CHAT, json=body, headers=slow) as leader,
    ):
        lines = leader.aiter_lines()
        seen = 0
        async for line in lines:
            seen += line.startswith("data: ")
            if seen == 3:
                break
        joining = http.stream("POST", CHAT, json=body, headers=slow)
        async with joining as joiner:
            assert joiner.headers["x-hotpath-coalesced"] == "true"
            joiner_lines = joiner.aiter_lines()
            first = await anext(joiner_lines)
            assert first.startswith("data: ")
            # The leader still has chunks to come: the joiner did not wait for the end.
            rest = [line async for line in lines if line.startswith("data: ")]
            assert rest[-1] == "data: [DONE]"
            assert len(rest) > 3
            joined = [line async for line in joiner_lines if line.startswith("data: ")]
            assert joined[-1] == "data: [DONE]"


async def test_first_client_leaving_does_not_stop_the_others(
    gateway: BackgroundServer, mock: MockUpstream
) -> None:
    body = chat_body(unique(), stream=True)
    slow = {"x-mock-tps": "30"}
    before = mock.stats().chat_requests
    async with httpx.AsyncClient(base_url=gateway.base, timeout=30) as http:

        async def leave_early() -> None:
            async with http.stream("POST", CHAT, json=body, headers=slow) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        return  # closes the connection mid-stream

        async def read_all() -> str:
            response = await http.post(CHAT, json=body, headers=slow)
            return response.text

        first = asyncio.ensure_future(leave_early())
        await asyncio.sleep(0)  # let the leaver's request go out first
        results = await asyncio.gather(read_all(), read_all(), first)
        for text in results[:2]:
            assert isinstance(text, str)
            assert events(text)[-1] == "data: [DONE]"
        assert mock.stats().chat_requests - before == 1
        again = await http.post(CHAT, json=body)
        assert again.headers["x-hotpath-cache"] == "hit"


async def test_all_clients_leaving_cancels_the_call_and_caches_nothing(
    gateway: BackgroundServer, mock: MockUpstream
) -> None:
    body = chat_body(unique(), stream=True)
    slow = {"x-mock-tps": "10"}  # 12 tokens over 1.2 s
    cancelled = mock.stats().cancelled
    async with httpx.AsyncClient(base_url=gateway.base, timeout=30) as http:

        async def leave_after_first_chunk() -> None:
            async with http.stream("POST", CHAT, json=body, headers=slow) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        return

        await asyncio.gather(leave_after_first_chunk(), leave_after_first_chunk())
        await wait_for(lambda: mock.stats().cancelled > cancelled)
        again = await http.post(CHAT, json=body)
        assert again.headers["x-hotpath-cache"] == "miss"
        assert events(again.text)[-1] == "data: [DONE]"


async def test_a_waiting_non_streamed_client_leaving_alone_cancels_the_call(
    gateway: BackgroundServer, mock: MockUpstream
) -> None:
    body = chat_body(unique())
    cancelled = mock.stats().cancelled
    async with httpx.AsyncClient(base_url=gateway.base, timeout=0.3) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(CHAT, json=body, headers={"x-mock-ttft-ms": "5000"})
    await wait_for(lambda: mock.stats().cancelled > cancelled)


@pytest.mark.redis
async def test_single_flight_across_gateways_through_redis(
    mock: MockUpstream, redis_url: str
) -> None:
    config = gateway_config(mock.url, tiers=("memory://", redis_url))
    with running_gateway(config) as one, running_gateway(config) as two:
        for stream in (True, False):
            text = unique()
            before = mock.stats().chat_requests
            async with httpx.AsyncClient(timeout=30) as http:
                responses = await asyncio.gather(
                    *[
                        http.post(
                            f"{(one, two)[i % 2].base}{CHAT}",
                            json=chat_body(text, stream=stream),
                            headers={"x-mock-ttft-ms": "300"},
                        )
                        for i in range(10)
                    ]
                )
            assert mock.stats().chat_requests - before == 1
            assert len({r.text for r in responses}) == 1
            assert all(r.status_code == 200 for r in responses)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.redis
@pytest.mark.slow
async def test_worker_processes_share_one_upstream_call(
    mock: MockUpstream, redis_url: str, tmp_path: Any
) -> None:
    port = _free_port()
    namespace = f"t{uuid.uuid4().hex[:8]}"
    config = tmp_path / "hotpath.toml"
    config.write_text(
        f"""
[server]
port = {port}
workers = 2

[upstreams.mock]
base_url = "{mock.url}"
forward_headers = ["x-mock-*"]

[cache]
tiers = ["memory://", "{redis_url}"]
namespace = "{namespace}"
"""
    )
    process = subprocess.Popen(  # noqa: ASYNC220 - starting it is instant; waits are bounded
        [sys.executable, "-m", "hotpath", "serve", "--config", str(config)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            end = time.monotonic() + 30
            while True:
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < end, "gateway did not start"
                await asyncio.sleep(0.05)
            text = unique()
            before = mock.stats().chat_requests
            # Separate connections, so the kernel spreads them over both workers.
            clients = [httpx.AsyncClient(base_url=base, timeout=30) for _ in range(16)]
            try:
                responses = await asyncio.gather(
                    *[
                        c.post(
                            CHAT,
                            json=chat_body(text, stream=i % 2 == 0),
                            headers={"x-mock-ttft-ms": "500"},
                        )
                        for i, c in enumerate(clients)
                    ]
                )
            finally:
                for c in clients:
                    await c.aclose()
            assert all(r.status_code == 200 for r in responses)
            assert mock.stats().chat_requests - before == 1
            metrics = (await http.get("/metrics")).text
            assert "hotpath_requests_total" in metrics
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        finally:
            if process.poll() is None:
                process.kill()
            assert process.stderr is not None
            process.stderr.close()


@pytest.mark.redis
async def test_redis_down_degrades_to_answering_alone(
    mock: MockUpstream, redis_server: RedisServer, tmp_path: Any
) -> None:
    tiers = ("memory://", f"{redis_server.url}?timeout=0.2", f"sqlite:///{tmp_path / 'c.db'}")
    with running_gateway(gateway_config(mock.url, tiers=tiers)) as server:
        async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
            assert (await http.post(CHAT, json=chat_body(unique()))).status_code == 200
            redis_server.stop()
            started = time.monotonic()
            body = chat_body(unique(), stream=True)
            responses = await asyncio.gather(*[http.post(CHAT, json=body) for _ in range(4)])
            assert time.monotonic() - started < 5
            assert all(r.status_code == 200 for r in responses)
            assert all(events(r.text)[-1] == "data: [DONE]" for r in responses)
            again = await http.post(CHAT, json=body)
            assert again.headers["x-hotpath-cache"] == "hit"
            ready = (await http.get("/readyz")).json()
            assert ready["status"] == "degraded"
            assert {"tier": "redis", "healthy": False} in ready["tiers"]
