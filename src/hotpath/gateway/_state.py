"""What every route of one gateway shares: config, cache, providers, flights, metrics."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import NamedTuple

from hotpath._clock import Clock
from hotpath.cache import TieredCache
from hotpath.cost._budget import BudgetRule
from hotpath.cost._select import Candidate, Choice, ModelSelector
from hotpath.gateway._anomalies import GatewayAnomalies
from hotpath.gateway._api_errors import ApiError, upstream_api_error
from hotpath.gateway._asgi import Request
from hotpath.gateway._config import GatewayConfig
from hotpath.gateway._cost import GatewayCost
from hotpath.gateway._cost_config import SelectConfig
from hotpath.gateway._flight import Flights
from hotpath.gateway._key_directory import KeyDirectory
from hotpath.gateway._keystore import KeyRecord, open_key_store
from hotpath.gateway._metrics import GatewayMetrics
from hotpath.gateway._resolve import Resolved, Route
from hotpath.gateway._shared_flight import SharedFlights
from hotpath.gateway._traffic import Traffic
from hotpath.gateway._traffic_config import LimitRule
from hotpath.providers._base import Provider
from hotpath.traffic._router import Deployment, Router

__all__ = ["Caller", "Resolved", "Route", "State", "caller_of", "upstream_api_error"]

log = logging.getLogger("hotpath.gateway")


class Caller(NamedTuple):
    """Who sent a request: the name of its gateway key (``""`` when the gateway
    has no keys) and its tenant; a key made through the admin API brings its own
    rate limits and budget."""

    key: str
    tenant: str
    limits: tuple[LimitRule, ...] = ()
    budgets: tuple[BudgetRule, ...] = ()


DEFAULT_KEYS_STORE = "sqlite:///.hotpath/keys.db"


def caller_of(record: KeyRecord) -> Caller:
    limits: tuple[LimitRule, ...] = ()
    if record.rpm is not None or record.tpm is not None:
        limits = (LimitRule(scope="key", match=record.name, rpm=record.rpm, tpm=record.tpm),)
    budgets: tuple[BudgetRule, ...] = ()
    if record.budget_usd is not None:
        budgets = (
            BudgetRule(
                scope="key",
                match=record.name,
                limit_usd=record.budget_usd,
                period=record.budget_period,
            ),
        )
    return Caller(record.name, record.tenant, limits, budgets)


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
        #: Set by Gateway.drain: the process is stopping, and /readyz says so.
        self.draining = False
        self.embedding_flights: dict[str, asyncio.Future[bytes]] = {}
        redis_url = config.cache.redis_url if config.cache.enabled else None
        self.shared = SharedFlights(redis_url) if redis_url is not None else None
        self.traffic = Traffic(config, providers, metrics, clock)
        self.cost = GatewayCost(config, metrics, clock, redis_url=self.traffic.redis_url)
        self.anomalies = GatewayAnomalies(config, metrics, clock)
        self._keys = {k.sha256: Caller(k.name, k.tenant) for k in config.keys}
        self._routes: dict[str, Resolved] = {}
        self._auth_cache: dict[bytes, Caller] = {}
        self._selectors: dict[str, ModelSelector] = {}
        self._watching: dict[str, list[ModelSelector]] = {}
        for public, route in config.models.items():
            if route.select is not None:
                selector = self._selector(route.select, clock)
                self._selectors[public] = selector
                for name in route.select.candidates:
                    self._watching.setdefault(name, []).append(selector)
        self.admin_digest = config.admin.digest()
        self.directory: KeyDirectory | None = None
        self._stored_keys = False  # whether the key store holds any key
        if config.admin.enabled:
            url = config.admin.keys_store or self.traffic.redis_url or DEFAULT_KEYS_STORE
            store = open_key_store(url, prefix=f"{config.cache.namespace}:")
            self.directory = KeyDirectory(store, clock=clock, on_change=self._keys_changed)

    def _selector(self, settings: SelectConfig, clock: Clock) -> ModelSelector:
        candidates = []
        for name in settings.candidates:
            route = self.config.models[name]
            price = self.cost.price(route.deployments[0].model or name)
            window = route.context_window
            if window is None and price is not None:
                window = price.context_window
            candidates.append(
                Candidate(
                    name=name,
                    quality=route.quality if route.quality is not None else 0.0,
                    input_price=price.input if price is not None else None,
                    output_price=price.output if price is not None else None,
                    context_window=window,
                )
            )
        return ModelSelector(
            candidates,
            weights=settings.weights,
            min_quality=settings.min_quality,
            long_prompt_tokens=settings.long_prompt_tokens,
            long_prompt_model=settings.long_prompt_model,
            expected_completion_tokens=settings.expected_completion_tokens,
            clock=clock,
        )

    def select(
        self, model: str, *, prompt_tokens: int, completion: int | None, tier: str
    ) -> Choice:
        """The model the ``select`` route ``model`` picks for this request."""
        return self._selectors[model].choose(
            prompt_tokens=prompt_tokens, completion_tokens=completion, tier=tier
        )

    def observe_latency(self, model: str, latency: float) -> None:
        """An upstream latency of ``model``, for the selectors that weigh it."""
        for selector in self._watching.get(model, ()):
            selector.observe(model, latency)

    def _keys_changed(self) -> None:
        self._auth_cache.clear()
        assert self.directory is not None
        self._stored_keys = bool(self.directory.records)

    async def start(self) -> None:
        await self.traffic.start()
        await self.cost.start()
        await self.anomalies.start()
        if self.directory is not None:
            await self.directory.start()
            self._keys_changed()

    async def aclose(self) -> None:
        await self.traffic.aclose()
        await self.cost.aclose()
        await self.anomalies.aclose()
        if self.directory is not None:
            await self.directory.aclose()

    def authenticate(self, request: Request) -> Caller:
        """The key and tenant of the request; 401 for a missing or unknown key.
        With no keys configured or stored, every request is accepted (key and
        tenant ``""``)."""
        if not self._keys and not self._stored_keys:
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
        if caller is None and self.directory is not None and scheme.lower() == b"bearer":
            record = self.directory.lookup(digest)
            caller = caller_of(record) if record is not None else None
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
