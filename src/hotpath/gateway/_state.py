"""What every route of one gateway shares: config, cache, providers, flights, metrics."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass

from hotpath._clock import Clock
from hotpath.cache import TieredCache
from hotpath.gateway._api_errors import ApiError, upstream_api_error
from hotpath.gateway._asgi import Request
from hotpath.gateway._config import GatewayConfig
from hotpath.gateway._flight import Flights
from hotpath.gateway._metrics import GatewayMetrics
from hotpath.gateway._shared_flight import SharedFlights
from hotpath.providers._base import Provider

__all__ = ["Route", "State", "upstream_api_error"]

log = logging.getLogger("hotpath.gateway")


@dataclass(frozen=True, slots=True)
class Route:
    """A resolved model: the provider that answers and the model name it knows."""

    provider: Provider
    deployment: str
    forward: tuple[str, ...] = ()

    def forwarded(self, headers: dict[bytes, bytes]) -> dict[str, str] | None:
        """The client headers this route passes on to its upstream."""
        if not self.forward:
            return None
        out = {}
        for raw, value in headers.items():
            name = raw.decode("latin-1")
            for rule in self.forward:
                if name == rule or (rule.endswith("*") and name.startswith(rule[:-1])):
                    out[name] = value.decode("latin-1")
                    break
        return out or None

    @property
    def identity(self) -> str:
        return f"{self.provider.kind}:{self.deployment}"


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
        self._keys = {k.sha256: k.tenant for k in config.keys}
        self._routes: dict[str, Route] = {}
        self._auth_cache: dict[bytes, str] = {}

    def authenticate(self, request: Request) -> str:
        """The tenant of the request's key; 401 for a missing or unknown key. With no
        keys configured, every request is accepted as tenant ``""``."""
        if not self._keys:
            return ""
        auth = request.headers.get(b"authorization")
        if auth is None:
            raise ApiError(
                401,
                "missing API key: send 'Authorization: Bearer <key>'",
                type="invalid_request_error",
                code="invalid_api_key",
            )
        tenant = self._auth_cache.get(auth)
        if tenant is not None:
            return tenant
        scheme, _, key = auth.partition(b" ")
        digest = hashlib.sha256(key.strip()).hexdigest()
        tenant = self._keys.get(digest) if scheme.lower() == b"bearer" else None
        if tenant is None:
            # The key itself is never echoed: only how it ends, as OpenAI does.
            tail = key.strip()[-4:].decode("latin-1", "replace")
            raise ApiError(
                401,
                f"incorrect API key provided: ...{tail}",
                type="invalid_request_error",
                code="invalid_api_key",
            )
        if len(self._auth_cache) < 10_000:
            self._auth_cache[auth] = tenant
        return tenant

    def resolve(self, model: str) -> Route:
        """Where ``model`` goes; 404 if no route takes it."""
        route = self._routes.get(model)
        if route is not None:
            return route
        models = self.config.models
        spec = models.get(model) or models.get("*")
        if spec is None:
            raise ApiError(
                404,
                f"the model {model!r} does not exist or is not routed by this gateway",
                param="model",
                code="model_not_found",
            )
        upstream = next((u for u in self.config.upstreams if u.name == spec.upstream), None)
        forward = upstream.forward_headers if upstream is not None else ()
        route = Route(self.providers[spec.upstream], spec.model or model, forward)
        if len(self._routes) < 10_000:
            self._routes[model] = route
        return route

    def cache_namespace(self, tenant: str) -> str:
        return "" if self.config.cache.share_across_tenants else tenant
