"""``hotpath serve``: run the gateway under uvicorn, in one or several processes.

Worker processes each build their own :class:`Gateway` from the same config (the
config file path and flag overrides travel in ``HOTPATH_SERVE_ARGS``); they share
the port (the server's master process binds it) and, when one is configured, the
Redis tier. Prometheus values are summed across workers through
``PROMETHEUS_MULTIPROC_DIR``. A worker whose master is gone stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

import orjson

from hotpath._background import FAST
from hotpath.gateway._app import Gateway
from hotpath.gateway._config import GatewayConfig
from hotpath.gateway._config_load import load_config
from hotpath.observe._logging import configure_logging
from hotpath.observe._tracing import check_tracing

__all__ = ["app_from_env", "describe", "serve"]

log = logging.getLogger("hotpath.gateway")
_ARGS = "HOTPATH_SERVE_ARGS"
_WATCH_MASTER = 1.0  # seconds between a worker's checks that its master lives


def describe(config: GatewayConfig) -> list[str]:
    """The start-up lines: where it listens, what it talks to, who may call it."""
    upstreams = ", ".join(f"{u.name} ({u.kind}) {u.base_url}" for u in config.upstreams)
    cache = " -> ".join(config.cache.tiers) if config.cache.enabled else "off"
    lines = [
        f"hotpath gateway listening on http://{config.host}:{config.port}/v1 "
        f"({config.workers} worker{'s' if config.workers > 1 else ''})",
        f"  upstreams: {upstreams or 'none'}",
        f"  cache: {cache}",
    ]
    if not config.keys:
        lines.append("  no gateway keys configured: every client is accepted")
    else:
        lines.append(f"  {len(config.keys)} gateway keys configured")
    lines.append(f"  traffic: {_describe_traffic(config)}")
    lines.append(f"  cost: {_describe_cost(config)}")
    return lines


def _describe_cost(config: GatewayConfig) -> str:
    from hotpath.cache._redis_url import redact
    from hotpath.gateway._cost import DEFAULT_USAGE_STORE
    from hotpath.gateway._state import DEFAULT_KEYS_STORE

    cost = config.cost
    traffic = config.traffic
    redis = traffic.redis_url or (config.cache.redis_url if config.cache.enabled else None)
    parts = []
    if cost.enabled:
        parts.append(f"usage in {redact(cost.store or redis or DEFAULT_USAGE_STORE)}")
    else:
        parts.append("usage accounting off")
    if cost.budgets:
        budget_store = cost.budget_store or redis
        where = (
            "shared through Redis"
            if budget_store and not budget_store.startswith(("memory", "sqlite"))
            else "in this process"
        )
        parts.append(f"{len(cost.budgets)} budgets ({where}, fail {cost.on_redis_error})")
    else:
        parts.append("no budgets")
    if config.admin.enabled:
        keys = config.admin.keys_store or redis or DEFAULT_KEYS_STORE
        parts.append(f"admin API on (keys in {redact(keys)})")
    else:
        parts.append("admin API off")
    return "; ".join(parts)


def _describe_traffic(config: GatewayConfig) -> str:
    traffic = config.traffic
    rules = []
    for rule in traffic.limits:
        amounts = [f"{v:g} {n}" for n, v in (("rpm", rule.rpm), ("tpm", rule.tpm)) if v]
        rules.append(f"{rule.label} {' '.join(amounts)}")
    limits = ", ".join(rules)
    shared = "local"
    redis = traffic.redis_url if traffic.redis_url is not None else config.cache.redis_url
    if redis:
        shared = f"shared through Redis, fail {traffic.on_redis_error}"
    parts = [
        f"limits {limits} ({traffic.on_limit}, {shared})" if limits else "no rate limits",
        f"{traffic.retry.attempts} attempts",
        "breakers on" if traffic.breaker is not None else "breakers off",
        f"concurrency {traffic.concurrency.algorithm}",
    ]
    return "; ".join(parts)


def app_from_env() -> Gateway:
    """A worker's app, from the arguments its master process left in the environment."""
    args = orjson.loads(os.environ[_ARGS])
    # The master's pid from the master itself: one killed while this worker was
    # still starting has already left it to init, so getppid() would not do.
    _leave_with_master(int(args.get("master") or os.getppid()))
    config = load_config(args["path"], env=os.environ, overrides=args["overrides"])
    # A worker is a fresh interpreter: it sets up its own logging.
    configure_logging(config.log_format, config.log_level)
    return _ServedGateway(config)


class _ServedGateway(Gateway):
    """The gateway as ``hotpath serve`` runs it: the stop signals that begin the
    server's graceful shutdown also :meth:`~Gateway.drain` it."""

    async def start(self) -> None:
        first = not self._started
        await super().start()
        if first:  # start() is idempotent: chain the handlers once
            _drain_on_signals(self)


def _drain_on_signals(gateway: Gateway) -> None:
    """Chain :meth:`Gateway.drain` after the handlers uvicorn has set for SIGINT and
    SIGTERM (uvicorn sets them before the app starts and puts back its own
    predecessors when it stops, which drops these too).

    uvicorn waits for open responses before it tells the app to shut down, and an
    open dashboard's event stream only ends when told to: without this it would
    hold every stop for the whole grace period.
    """
    if threading.current_thread() is not threading.main_thread():
        return  # signals reach only the main thread: nothing to chain here
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue  # not the server's handler: the signal does not stop it gracefully

        def handler(
            signum: int,
            frame: FrameType | None,
            previous: Callable[[int, FrameType | None], Any] = previous,
        ) -> None:
            previous(signum, frame)
            loop.call_soon_threadsafe(gateway.drain)

        signal.signal(sig, handler)


def _leave_with_master(master: int) -> None:
    """Stop this worker (gracefully, by SIGTERM to itself) once its master is gone:
    a master killed with SIGKILL cannot stop its workers, and they would go on
    holding the port with nothing to supervise them (gunicorn's workers do the same)."""

    def watch() -> None:
        while os.getppid() == master:
            time.sleep(_WATCH_MASTER)
        log.warning("the master process %d is gone: this worker stops", master)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="watch-master", daemon=True).start()


def serve(
    path: str | None, overrides: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> int:
    """Serve until interrupted. Returns the exit status."""
    import uvicorn

    env = dict(os.environ if env is None else env)
    config = load_config(path, env=env, overrides=overrides)
    check_tracing(config.observe)  # fail now, not in each worker, if the extra is missing
    configure_logging(config.log_format, config.log_level)
    lines = describe(config)
    if not config.upstreams:
        lines.append("  warning: no upstream configured (--upstream URL): every model answers 404")
    if config.log_format == "json":
        # Every line of a JSON log is JSON, the start-up lines too.
        for line in lines:
            text = line.strip()
            log.log(logging.WARNING if text.startswith("warning:") else logging.INFO, text)
    else:
        for line in lines:
            print(line, file=sys.stderr, flush=True)
    common: dict[str, Any] = {
        **FAST,
        "host": config.host,
        "port": config.port,
        "timeout_graceful_shutdown": 10,
        # Logging is ours (configure_logging): uvicorn's loggers propagate to it,
        # and say what they do at start-up only when asked for debug lines.
        "log_config": None,
        "log_level": "debug" if config.log_level == "debug" else FAST["log_level"],
    }
    if config.workers == 1:
        uvicorn.run(_ServedGateway(config), **common)
        return 0
    metrics_dir = tempfile.mkdtemp(prefix="hotpath-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ[_ARGS] = orjson.dumps(
        {"path": path, "overrides": dict(overrides), "master": os.getpid()}
    ).decode()
    try:
        uvicorn.run(
            "hotpath.gateway._serve:app_from_env",
            factory=True,
            workers=config.workers,
            **common,
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0
