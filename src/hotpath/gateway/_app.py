"""The gateway as an ASGI application.

``Gateway(config)`` is an ASGI app: serve it with any ASGI server (``hotpath
serve`` uses the one we measured fastest). It starts its cache and upstream
clients on the ASGI lifespan start-up, or on :meth:`Gateway.start` when driven
directly, and closes them on shutdown.

Every request gets an id (the client's sane ``x-request-id``, else a new one),
echoed in the response's ``x-request-id`` and bound to the request's task so
that every log line written on its behalf carries it; it ends with one access
log line, its counts in the metrics and, when tracing is on, its span
(docs/observability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

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
from hotpath.gateway._dashboard import DashboardSampler
from hotpath.gateway._embeddings import embeddings
from hotpath.gateway._metrics import GatewayMetrics, scraped_samples
from hotpath.gateway._state import State
from hotpath.observe._logging import fast_line_writer, flush_lines
from hotpath.observe._request import (
    RequestInfo,
    bind_request,
    request_id_from,
    unbind_request,
)
from hotpath.observe._tracing import Tracer, load_tracer
from hotpath.providers._base import Provider
from hotpath.providers._build import build_provider

__all__ = ["Gateway"]

log = logging.getLogger("hotpath.gateway")
access_log = logging.getLogger("hotpath.access")

Handler = Callable[[State, Request], Awaitable[None]]

_REQUEST_ID = b"x-request-id"
# Probes and scrapes come every few seconds: their access lines are debug lines,
# and they are not traced.
_QUIET = frozenset({"/healthz", "/readyz", "/metrics", "/dashboard/events"})
# Open for as long as a dashboard is: not requests in flight.
_LONG_LIVED = frozenset({"/dashboard/events"})
_PUBLISH_EVERY = 5.0  # seconds between a worker's publications of its stats
_MAX_SHOWN_PATH = 256


class Gateway:
    """The OpenAI-compatible gateway: an ASGI application.

    ``cache`` overrides the cache built from ``config.cache`` (pass a
    :class:`TieredCache` to share one); ``providers`` overrides the upstream
    clients built from ``config.upstreams`` (by upstream name); ``tracer`` the
    request tracer built from ``config.observe`` (with its own exporter, say).
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        cache: TieredCache | None = None,
        providers: dict[str, Provider] | None = None,
        clock: Clock | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.config = config
        self._clock = clock or SystemClock()
        self._own_cache = cache is None
        if cache is None and config.cache.enabled:
            cache = TieredCache(
                list(config.cache.tiers), default_ttl=config.cache.ttl, clock=self._clock
            )
        built = providers or {u.name: build_provider(u) for u in config.upstreams}
        #: The request tracer, ``None`` unless ``[observe] tracing`` is on.
        self.tracer = tracer if tracer is not None else load_tracer(config.observe)
        self.state = State(config, built, cache, GatewayMetrics(), self._clock)
        self.dashboard = DashboardSampler(self.state)
        state = self.state
        self.state.metrics.watch(
            lambda: scraped_samples(state.cache, state.traffic.limiters, state.metrics.bounded)
        )
        self._kinds: dict[Handler, str] = {chat_completions: "chat", embeddings: "embeddings"}
        self._publisher: asyncio.Task[None] | None = None
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
            ("GET", "/dashboard"): self.dashboard.page,
            ("POST", "/dashboard"): self.dashboard.sign_in,
            ("GET", "/dashboard/events"): self.dashboard.events,
        }
        self._paths = {path for _, path in self._routes}
        self._started = False

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
        await self.dashboard.start()
        if self.state.metrics.multiprocess:
            self._publisher = asyncio.get_running_loop().create_task(self._publish())

    async def _publish(self) -> None:
        """With several workers: publish this worker's scraped stats now and then,
        so that a scrape answered by any worker sums them all."""
        while True:
            try:
                self.state.metrics.sample()
            except Exception:  # a failed publication must not end the next ones
                log.exception("publishing this worker's metrics failed")
            await asyncio.sleep(_PUBLISH_EVERY)

    def drain(self) -> None:
        """Begin stopping: ``/readyz`` answers 503 and open dashboard streams end
        (their pages reconnect), while calls in flight go on. A server's graceful
        shutdown waits for open responses before it closes the app; without this,
        an open dashboard would hold it for the whole grace period. Idempotent;
        :meth:`aclose` still does the closing."""
        self.state.draining = True
        self.dashboard.end_streams()

    async def aclose(self) -> None:
        """Cancel calls in flight and close the upstream clients and the cache."""
        await self.dashboard.aclose()
        if self._publisher is not None:
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher
            self._publisher = None
            self.state.metrics.retire()
        if self.tracer is not None:
            self.tracer.flush()
        await self.state.flights.aclose()
        await self.state.aclose()
        if self.state.shared is not None:
            await self.state.shared.aclose()
        for provider in self.state.providers.values():
            await provider.aclose()
        flush_lines()  # the last access lines, before the loop that would time them goes
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
        method: str = scope["method"]
        path: str = scope["path"]
        handler = self._routes.get((method, path))
        if handler is None and path.startswith(KEYS_PATH) and method == "DELETE":
            handler = admin_revoke_key
        request = Request(scope, receive, send)
        info = RequestInfo(
            request_id_from(request.headers.get(_REQUEST_ID)), method, path, time.perf_counter()
        )
        tag = (_REQUEST_ID, info.request_id.encode())

        async def send_tagged(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                info.status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), tag]}
            await send(message)

        request.send = send_tagged
        route = path if handler is not None else "unknown"
        if handler is admin_revoke_key:
            route = KEYS_PATH + "{name}"
        bound = bind_request(info)
        tracer = self.tracer
        traced = None
        if tracer is not None and path not in _QUIET:
            info.tracer = tracer
            traced = tracer.start_request(info, route, request.headers)
        in_flight = None if path in _LONG_LIVED else self.state.metrics.in_flight
        if in_flight is not None:
            in_flight.inc()
        try:
            if handler is None:
                raise self._not_found(method, path)
            await handler(self.state, request)
        except ApiError as exc:
            await send_error(send_tagged, exc)
        except HotpathError as exc:
            await send_error(
                send_tagged, ApiError(400, str(exc), param=getattr(exc, "param", None))
            )
        except Exception:
            log.exception("unhandled error answering %s %s", method, _shown(path))
            if info.status:
                raise  # the response has started: only the server can end it
            await send_error(
                send_tagged,
                ApiError(500, "internal error", type="server_error", code="internal_error"),
            )
        finally:
            if in_flight is not None:
                in_flight.dec()
            self._finish(info, route, handler)
            if traced is not None and tracer is not None:
                tracer.end_request(info, traced)
            unbind_request(bound)

    def _finish(self, info: RequestInfo, route: str, handler: Handler | None) -> None:
        """Count the request and write its access line."""
        elapsed = time.perf_counter() - info.started
        # 499 (as nginx says it): the client left before the response started.
        status = str(info.status) if info.status else "499"
        metrics = self.state.metrics
        metrics.child(metrics.requests, route, status).inc()
        kind = self._kinds.get(handler) if handler is not None else None
        if kind is not None and info.model:
            model = metrics.bounded(info.model)
            metrics.child(metrics.model_requests, kind, model, info.cache or "none", status).inc()
            if info.upstream_seconds and not info.coalesced and status == "200":
                overhead = max(0.0, elapsed - info.upstream_seconds)
                metrics.child(metrics.overhead, kind).observe(overhead)
        if not self.config.access_log:
            return
        level = logging.DEBUG if info.path in _QUIET else logging.INFO
        if not access_log.isEnabledFor(level):
            return
        path = _shown(info.path)
        fields: dict[str, object] = {
            "method": info.method,
            "path": path,
            "status": info.status or 499,
            "duration_ms": round(elapsed * 1000, 3),
        }
        if info.model:
            fields["model"] = info.model
        if info.cache:
            fields["cache"] = info.cache
        if info.deployment and info.upstream_seconds:
            fields["deployment"] = info.deployment
        message = f"{info.method} {path} {status}"
        writer = fast_line_writer(access_log, level)
        if writer is not None:
            # hotpath serve's own handler: the line formatted here and written in
            # a batch (a record through logging cost ~50 us of CPU per request
            # served, most of a cache hit's; bench/observe_path.py).
            writer.emit_fields(level, access_log.name, message, info.request_id, fields)
            return
        # A record made here, not by Logger.log: that would walk the stack to name
        # the caller, a fifth of the line's cost, for fields no formatter shows.
        record = access_log.makeRecord(
            access_log.name,
            level,
            "",
            0,
            "%s %s %s",
            (info.method, path, status),
            None,
            None,
            fields,
        )
        access_log.handle(record)

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


def _shown(path: str) -> str:
    """``path`` fit for a log line: the (percent-decoded) path a client sent may
    hold line breaks or be huge."""
    if len(path) <= _MAX_SHOWN_PATH and path.isprintable():
        return path
    return ascii(path[:_MAX_SHOWN_PATH])


async def _healthz(state: State, request: Request) -> None:
    await send_bytes(request.send, 200, b'{"status":"ok"}')


async def _readyz(state: State, request: Request) -> None:
    """Ready when the cache's tiers are healthy; a degraded tier is reported, not
    fatal (the gateway still answers through the others). A gateway that is
    stopping answers 503, so that a load balancer sends new work elsewhere."""
    tiers = []
    if state.cache is not None:
        tiers = [{"tier": t.name, "healthy": t.healthy} for t in state.cache.tiers]
    degraded = any(not t["healthy"] for t in tiers)
    status = "stopping" if state.draining else "degraded" if degraded else "ready"
    body = {"status": status, "tiers": tiers}
    await send_bytes(request.send, 503 if state.draining else 200, orjson.dumps(body))


async def _metrics(state: State, request: Request) -> None:
    directory = state.directory
    state.cost.export({"keys": directory.stats().poll_failures} if directory is not None else None)
    # Stats are read here, on the loop that owns them; rendering runs on a thread.
    state.metrics.sample()
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
