"""Shared set-up for gateway tests: a gateway over a mock upstream, on real sockets."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, Literal

import openai

from hotpath._background import BackgroundServer
from hotpath.gateway import (
    CacheConfig,
    Gateway,
    GatewayConfig,
    ModelRoute,
    TrafficConfig,
    UpstreamConfig,
)
from hotpath.gateway._cost_config import CostConfig
from hotpath.providers.mock import MockUpstream
from hotpath.traffic._retry import RetryPolicy


def gateway_config(
    upstream_url: str,
    *,
    tiers: tuple[str, ...] = ("memory://",),
    kind: Literal["openai", "anthropic"] = "openai",
    **options: Any,
) -> GatewayConfig:
    """A gateway sending every model to ``upstream_url``, with a fresh cache namespace."""
    cache_options = {k[6:]: options.pop(k) for k in list(options) if k.startswith("cache_")}
    cache = CacheConfig(tiers=tiers, namespace=f"t{uuid.uuid4().hex[:10]}")
    cache = replace(cache, **cache_options) if cache_options else cache
    upstream_options = {
        k: options.pop(k)
        for k in list(options)
        if k in ("read_timeout", "first_token_timeout", "connect_timeout", "api_key")
    }
    upstream_options.setdefault("forward_headers", ("x-mock-*",))
    upstream = UpstreamConfig(
        name="mock",
        base_url=upstream_url,
        kind=kind,
        **upstream_options,
    )
    models = options.pop("models", {"*": ModelRoute(upstream="mock")})
    # One try per request unless a test asks for traffic control's retries: these
    # tests count the upstream's requests.
    options.setdefault("traffic", TrafficConfig(retry=RetryPolicy(attempts=1)))
    # Usage is booked in the process unless a test says where.
    options.setdefault("cost", CostConfig(store="memory://"))
    return GatewayConfig(upstreams=(upstream,), models=models, cache=cache, **options)


@contextlib.contextmanager
def running_gateway(config: GatewayConfig) -> Iterator[BackgroundServer]:
    """The gateway served by uvicorn on a free port; ``server.app`` is the Gateway."""
    with BackgroundServer(Gateway(config)) as server:
        yield server


def gateway_of(server: BackgroundServer) -> Gateway:
    app = server.app
    assert isinstance(app, Gateway)
    return app


_clients: list[openai.OpenAI] = []


def sdk(server_or_url: BackgroundServer | str, **options: Any) -> openai.OpenAI:
    """A sync openai client for the gateway (or a URL), closed after the test
    (``close_clients``, an autouse fixture): an unclosed one leaks sockets."""
    base = server_or_url if isinstance(server_or_url, str) else f"{server_or_url.base}/v1"
    options.setdefault("api_key", "unused")
    client = openai.OpenAI(base_url=base, max_retries=0, **options)
    _clients.append(client)
    return client


def close_clients() -> None:
    while _clients:
        _clients.pop().close()


def chat_body(text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


def unique(text: str = "q") -> str:
    return f"{text} {uuid.uuid4().hex}"


__all__ = [
    "MockUpstream",
    "chat_body",
    "close_clients",
    "gateway_config",
    "gateway_of",
    "running_gateway",
    "sdk",
    "unique",
]
