"""What every route of one gateway shares: config, cache, providers, flights, metrics."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import NamedTuple

from hotpath._clock import Clock
from hotpath.cache import TieredCache
from hotpath.gateway._api_errors import ApiError, upstream_api_error
from hotpath.gateway._asgi import Request
from hotpath.gateway._config import GatewayConfig
from hotpath.gateway._flight import Flights
from hotpath.gateway._metrics import GatewayMetrics
from hotpath.gateway._resolve import Resolved, Route
from hotpath.gateway._shared_flight import SharedFlights
from hotpath.gateway._traffic import Traffic
from hotpath.providers._base import Provider
from hotpath.traffic._router import Deployment, Router

__all__ = ["Caller", "Resolved", "Route", "State", "upstream_api_error"]

log = logging.getLogger("hotpath.gateway")


class Caller(NamedTuple):
    """Who sent a request: the name of its gateway key (``""`` when the gateway
    has no keys) and its tenant."""

    key: str
    tenant: str


_ANONYMOUS = Caller("", "")


class State:
    """The shared parts of a running gateway."""

    def __init__(
        self,
        config: GatewayConfig,
        providers: dict[str, Provider],
        cache: TieredCache | None,
        metrics: GatewayMetrics,
        clock: Clock,
    ) -> None:
        self.config = config
        self.providers = providers
        self.cache = cache
        self.metrics = metrics
        self.clock = clock
        self.flights = Flights()
        self.embedding_flights: dict[str, asyncio.Future[bytes]] = {}
        redis_url = config.cache.redis_url if config.cache.enabled else None
        self.shared = SharedFlights(redis_url) if redis_url is not None else None
        self.traffic = Traffic(config, providers, metrics, clock)
        self._keys = {k.sha256: Caller(k.name, k.tenant) for k in config.keys}
        self._routes: dict[str, Resolved] = {}
        self._auth_cache: dict[bytes, Caller] = {}

    def authenticate(self, request: Request) -> Caller:
        """The key and tenant of the request; 401 for a missing or unknown key.
        With no keys configured, every request is accepted (key and tenant ``""``)."""
        if not self._keys:
            return _ANONYMOUS
        auth = request.headers.get(b"authorization")
        if auth is None:
            raise ApiError(
                401,
                "missing API key: send 'Authorization: Bearer <key>'",
                type="invalid_request_error",
                code="invalid_api_key",
            )
        caller = self._auth_cache.get(auth)
        if caller is not None:
            return caller
        scheme, _, key = auth.partition(b" ")
        digest = hashlib.sha256(key.strip()).hexdigest()
        caller = self._keys.get(digest) if scheme.lower() == b"bearer" else None
        if caller is None:
            # The key itself is never echoed: only how it ends, as OpenAI does.
            tail = key.strip()[-4:].decode("latin-1", "replace")
            raise ApiError(
                401,
                f"incorrect API key provided: ...{tail}",
                type="invalid_request_error",
                code="invalid_api_key",
            )
        if len(self._auth_cache) < 10_000:
            self._auth_cache[auth] = caller
        return caller

    def resolve(self, model: str) -> Resolved:
        """What ``model`` means: its deployments and their router; 404 if no route
        takes it."""
        found = self._routes.get(model)
        if found is not None:
            return found
        models = self.config.models
        spec = models.get(model) or models.get("*")
        if spec is None:
            raise ApiError(
                404,
                f"the model {model!r} does not exist or is not routed by this gateway",
                param="model",
                code="model_not_found",
            )
        targets = []
        for target in spec.deployments:
            upstream = self.config.upstream(target.upstream)
            deployment = target.model or model
            targets.append(
                Route(
                    self.providers[target.upstream],
                    deployment,
                    upstream.forward_headers,
                    f"{target.upstream}/{deployment}",
                )
            )
        router = Router(
            [
                Deployment(name=r.name, weight=t.weight, cost=t.cost)
                for r, t in zip(targets, spec.deployments, strict=True)
            ],
            strategy=spec.routing,
            clock=self.clock,
        )
        resolved = Resolved(model, spec, tuple(targets), router, {r.name: r for r in targets})
        if len(self._routes) < 10_000:
            self._routes[model] = resolved
        return resolved

    def cache_namespace(self, caller: Caller) -> str:
        return "" if self.config.cache.share_across_tenants else caller.tenant
