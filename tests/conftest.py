"""Shared fixtures: a real Redis.

REDIS_URL if set, else 127.0.0.1:6379 if it answers, else redis-server on a free port.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

sys.path.insert(0, str(Path(__file__).parent))

from gateway_support import close_clients
from redis_server import RedisServer, redis_answers


@pytest.fixture(autouse=True)
def _close_sdk_clients() -> Iterator[None]:
    """Close the openai clients a test made with ``gateway_support.sdk``."""
    yield
    close_clients()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a Redis the tests may write to (isolated by key prefix)."""
    env = os.environ.get("REDIS_URL")
    if env:
        yield env
        return
    default = "redis://127.0.0.1:6379/0"
    if redis_answers(default):
        yield default
        return
    server = RedisServer()
    server.start()
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix unique to this test; its keys are deleted afterwards."""
    prefix = f"hptest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    finally:
        client.close()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server that the test may stop and restart."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()
