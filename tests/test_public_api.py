"""The public API is what __all__ says, and importing it does no work."""

from __future__ import annotations

import subprocess
import sys

import hotpath
import hotpath.cache
import hotpath.cost
import hotpath.gateway
import hotpath.traffic


def test_all_names_exist_and_are_sorted() -> None:
    for module in (hotpath, hotpath.cache, hotpath.cost, hotpath.gateway, hotpath.traffic):
        assert sorted(module.__all__) == list(module.__all__)
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name} missing"


def test_public_names_are_not_private_modules() -> None:
    for name in hotpath.__all__:
        assert not name.startswith("_")


def test_issue_names_are_exported_from_both() -> None:
    names = {
        "TieredCache",
        "MemoryTier",
        "RedisTier",
        "SQLiteTier",
        "cached",
        "CacheStats",
        "HotpathError",
    }
    assert names <= set(hotpath.__all__)
    assert names <= set(hotpath.cache.__all__)


def test_errors_form_one_tree() -> None:
    for name in (
        "ConfigError",
        "CacheError",
        "InvalidKeyError",
        "InvalidTTLError",
        "CodecError",
        "KeyBuildError",
        "TrafficError",
    ):
        assert issubclass(getattr(hotpath, name), hotpath.HotpathError)
    for name in ("RateLimitedError", "OverloadedError", "CircuitOpenError"):
        assert issubclass(getattr(hotpath, name), hotpath.TrafficError)
        assert getattr(hotpath.traffic, name) is getattr(hotpath, name)


def test_traffic_names_of_the_issue_are_public() -> None:
    names = {
        "LocalRateLimiter",
        "RedisRateLimiter",
        "ConcurrencyLimiter",
        "Gradient2Limit",
        "VegasLimit",
        "AIMDLimit",
        "CircuitBreaker",
        "RedisBreakerSync",
        "RetryPolicy",
        "RetryBudget",
        "retry",
        "Router",
        "ProviderLimits",
    }
    assert names <= set(hotpath.traffic.__all__)


def test_import_starts_no_threads_and_opens_no_sockets() -> None:
    code = (
        "import threading, socket\n"
        "opened = []\n"
        "orig = socket.socket.connect\n"
        "socket.socket.connect = lambda self, *a: opened.append(a) or orig(self, *a)\n"
        "import hotpath, hotpath.cache, hotpath.traffic\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "assert not opened, opened\n"
        "import sys\n"
        "assert 'theine' not in sys.modules and 'cachetools' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_gateway_names_load_on_first_use_only() -> None:
    code = (
        "import sys, hotpath\n"
        "assert 'hotpath.gateway' not in sys.modules and 'aiohttp' not in sys.modules\n"
        "assert hotpath.Gateway.__name__ == 'Gateway'\n"
        "assert 'hotpath.gateway' in sys.modules\n"
        "import hotpath.gateway as g\n"
        "assert sorted(g.__all__) == list(g.__all__)\n"
        "assert all(getattr(hotpath, n) is getattr(g, n) for n in g.__all__)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_upstream_errors_are_hotpath_errors() -> None:
    for name in (
        "UpstreamError",
        "UpstreamStatusError",
        "UpstreamTimeoutError",
        "UpstreamUnavailableError",
        "UpstreamStreamCutError",
    ):
        assert issubclass(getattr(hotpath, name), hotpath.HotpathError)
