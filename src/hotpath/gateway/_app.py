"""The gateway as an ASGI application.

``Gateway(config)`` is an ASGI app: serve it with any ASGI server (``hotpath
serve`` uses the one we measured fastest). It starts its cache and upstream
clients on the ASGI lifespan start-up, or on :meth:`Gateway.start` when driven
directly, and closes them on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import orjson

from hotpath._clock import Clock, SystemClock
from hotpath._errors import HotpathError
from hotpath.cache import TieredCache
from hotpath.gateway._admin import (
    KEYS_PATH,
    admin_budgets,
    admin_create_key,
    admin_keys,
    admin_revoke_key,
    admin_spend,
)
from hotpath.gateway._api_errors import ApiError
from hotpath.gateway._asgi import Receive, Request, Scope, Send, send_bytes, send_error
from hotpath.gateway._chat import chat_completions
from hotpath.gateway._config import GatewayConfig
from hotpath.gateway._embeddings import embeddings
from hotpath.gateway._metrics import GatewayMetrics
from hotpath.gateway._state import State
from hotpath.providers._base import Provider
from hotpath.providers._build import build_provider

__all__ = ["Gateway"]

log = logging.getLogger("hotpath.gateway")

Handler = Callable[[State, Request], Awaitable[None]]


class Gateway:
    """The OpenAI-compatible gateway: an ASGI application.

    ``cache`` overrides the cache built from ``config.cache`` (pass a
    :class:`TieredCache` to share one); ``providers`` overrides the upstream
    clients built from ``config.upstreams`` (by upstream name).
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        cache: TieredCache | None = None,
        providers: dict[str, Provider] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self._clock = clock or SystemClock()
        self._own_cache = cache is None
        if cache is None and config.cache.enabled:
            cache = TieredCache(
                list(config.cache.tiers), default_ttl=config.cache.ttl, clock=self._clock
            )
        built = providers or {u.name: build_provider(u) for u in config.upstreams}
        self.state = State(config, built, cache, GatewayMetrics(), self._clock)
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/chat/completions"): chat_completions,
            ("POST", "/chat/completions"): chat_completions,
            ("POST", "/v1/embeddings"): embeddings,
            ("POST", "/embeddings"): embeddings,
            ("GET", "/v1/models"): _models,
            ("GET", "/models"): _models,
            ("GET", "/healthz"): _healthz,
            ("GET", "/readyz"): _readyz,
            ("GET", "/metrics"): _metrics,
            ("GET", "/admin/spend"): admin_spend,
            ("GET", "/admin/budgets"): admin_budgets,
            ("GET", "/admin/keys"): admin_keys,
            ("POST", "/admin/keys"): admin_create_key,
        }
        self._paths = {path for _, path in self._routes}
        self._started = False
        self._ready = False

    def __repr__(self) -> str:
        return f"Gateway(upstreams={[u.name for u in self.config.upstreams]!r})"

    @property
    def cache(self) -> TieredCache | None:
        return self.state.cache

    async def start(self) -> None:
        """Open the cache and the upstream clients (idempotent)."""
        if self._started:
            return
        self._started = True
        if self.state.cache is not None:
            await self.state.cache.start()
        for provider in self.state.providers.values():
            await provider.start()
        await self.state.start()
        self._ready = True

    async def aclose(self) -> None:
        """Cancel calls in flight and close the upstream clients and the cache."""
        self._ready = False
        await self.state.flights.aclose()
        await self.state.aclose()
        if self.state.shared is not None:
            await self.state.shared.aclose()
        for provider in self.state.providers.values():
            await provider.aclose()
        if self.state.cache is not None and self._own_cache:
            await self.state.cache.aclose()
        self._started = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._started:
            await self.start()
        handler = self._routes.get((scope["method"], scope["path"]))
        if handler is None and scope["path"].startswith(KEYS_PATH) and scope["method"] == "DELETE":
            handler = admin_revoke_key
        request = Request(scope, receive, send)
        metrics = self.state.metrics
        in_flight = metrics.in_flight
        in_flight.inc()
        status = "200"
        try:
            if handler is None:
                raise self._not_found(scope["method"], scope["path"])
            await handler(self.state, request)
        except ApiError as exc:
            status = str(exc.status)
            await send_error(send, exc)
        except HotpathError as exc:
            status = "400"
            await send_error(send, ApiError(400, str(exc), param=getattr(exc, "param", None)))
        finally:
            in_flight.dec()
            route = scope["path"] if handler is not None else "unknown"
            if handler is admin_revoke_key:
                route = KEYS_PATH + "{name}"
            metrics.child(metrics.requests, route, status).inc()

    def _not_found(self, method: str, path: str) -> ApiError:
        if path in self._paths:
            return ApiError(
                405, f"method {method} is not allowed on {path}", code="method_not_allowed"
            )
        return ApiError(404, f"no route for {method} {path}", code="not_found")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    log.exception("gateway start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.aclose()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return


async def _healthz(state: State, request: Request) -> None:
    await send_bytes(request.send, 200, b'{"status":"ok"}')


async def _readyz(state: State, request: Request) -> None:
    """Ready when the cache's tiers are healthy; a degraded tier is reported, not
    fatal (the gateway still answers through the others)."""
    tiers = []
    if state.cache is not None:
        tiers = [{"tier": t.name, "healthy": t.healthy} for t in state.cache.tiers]
    degraded = any(not t["healthy"] for t in tiers)
    body = {"status": "degraded" if degraded else "ready", "tiers": tiers}
    await send_bytes(request.send, 200, orjson.dumps(body))


async def _metrics(state: State, request: Request) -> None:
    directory = state.directory
    state.cost.export({"keys": directory.stats().poll_failures} if directory is not None else None)
    body = await asyncio.get_running_loop().run_in_executor(None, state.metrics.render)
    await request.send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain; version=0.0.4; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await request.send({"type": "http.response.body", "body": body})


async def _models(state: State, request: Request) -> None:
    state.authenticate(request)
    created = int(time.time())
    seen: dict[str, dict[str, object]] = {}
    for public, route in state.config.models.items():
        if public != "*":
            seen[public] = {
                "id": public,
                "object": "model",
                "created": created,
                "owned_by": route.upstream,
            }
    wildcard = state.config.models.get("*")
    if wildcard is not None:
        try:
            listed = await state.providers[wildcard.upstream].models()
        except Exception as exc:  # noqa: BLE001 - the mapped names still answer
            log.warning("could not list the models of upstream %r: %s", wildcard.upstream, exc)
            listed = []
        for model in listed:
            name = model.get("id")
            if isinstance(name, str) and name not in seen:
                seen[name] = model
    await send_bytes(
        request.send, 200, orjson.dumps({"object": "list", "data": list(seen.values())})
    )
