"""Three ``hotpath serve`` processes on one Redis hold one shared rate limit: in no
window do they let through more than the rate allows plus the burst, and
together they let through about that much (the limit is not split three ways)."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from hotpath.providers.mock import MockConfig, MockUpstream
from serve_support import free_port, hotpath_serve, wait_until_healthy

RPM = 600  # 10 requests a second
BURST = 5
RUN_SECONDS = 3.0


def replica_config(tmp_path: Path, upstream: str, redis_url: str) -> Path:
    namespace = f"rep{uuid.uuid4().hex[:10]}"
    path = tmp_path / "hotpath.toml"
    path.write_text(
        f"""
[upstreams.mock]
base_url = "{upstream}"

[cache]
tiers = ["memory://", "{redis_url}"]
namespace = "{namespace}"

[[traffic.limits]]
scope = "global"
rpm = {RPM}
burst = {BURST}
""",
        encoding="utf-8",
    )
    return path


@pytest.mark.slow
def test_three_replicas_on_one_redis_share_one_limit(tmp_path: Path, redis_url: str) -> None:
    with MockUpstream(MockConfig(completion_tokens=2)) as mock, contextlib.ExitStack() as stack:
        config = replica_config(tmp_path, mock.url, redis_url)
        clients = []
        for i in range(3):
            port = free_port()
            log = tmp_path / f"replica{i}.log"
            args = ["--config", str(config), "--port", str(port)]
            proc = stack.enter_context(hotpath_serve(args, tmp_path, log))
            client = stack.enter_context(
                httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0)
            )
            wait_until_healthy(client, proc, log, time.monotonic() + 60)
            clients.append(client)

        admitted: list[float] = []
        refused = 0
        lock = threading.Lock()
        start = time.monotonic()

        def hammer(client: httpx.Client) -> None:
            nonlocal refused
            while time.monotonic() - start < RUN_SECONDS:
                body = {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": uuid.uuid4().hex}],
                }
                response = client.post("/v1/chat/completions", json=body)
                with lock:
                    if response.status_code == 200:
                        admitted.append(time.monotonic())
                    else:
                        assert response.status_code == 429, response.text
                        refused += 1

        threads = [threading.Thread(target=hammer, args=(c,)) for c in clients for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    elapsed = time.monotonic() - start
    rate = RPM / 60
    admitted.sort()
    # Any window of one second: at most the burst plus one second's worth (plus one
    # for the window's closed ends and the time between decision and response).
    for i, t in enumerate(admitted):
        in_window = sum(1 for u in admitted[i:] if u - t <= 1.0)
        assert in_window <= BURST + rate + 1, (in_window, admitted)
    # Over the whole run: no more than the rate allows, and not much less either.
    assert len(admitted) <= BURST + rate * elapsed + 1
    assert len(admitted) >= rate * RUN_SECONDS * 0.8
    assert refused > len(admitted)
