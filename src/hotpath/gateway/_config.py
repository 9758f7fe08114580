"""The gateway's configuration: typed, frozen, keyword-only value objects.

:mod:`hotpath.gateway._config_load` builds them from a TOML file, ``HOTPATH_*``
environment variables and command-line flags; constructing them directly (in tests,
or from Python) validates the same way.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from hotpath._errors import ConfigError
from hotpath._options import (
    check_bool,
    check_count,
    check_http_url,
    check_non_negative,
    check_positive,
    check_text,
)
from hotpath.gateway._cost_config import AdminConfig, CostConfig, SelectConfig
from hotpath.gateway._traffic_config import TrafficConfig
from hotpath.observe._config import ObserveConfig
from hotpath.observe._logging import LogFormat, check_log_format, check_log_level

__all__ = [
    "CacheConfig",
    "GatewayConfig",
    "GatewayKey",
    "ModelRoute",
    "ModelTarget",
    "UpstreamConfig",
    "hash_key",
]

UpstreamKind = Literal["openai", "anthropic"]
_KINDS = ("openai", "anthropic")
DEFAULT_TIERS = ("memory://?max_entries=50000", "sqlite:///.hotpath/cache.db")


def hash_key(key: str) -> str:
    """The stored form of a gateway key: its SHA-256, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def _frozen(mapping: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, kw_only=True)
class UpstreamConfig:
    """One provider endpoint.

    ``kind`` is ``openai`` (any OpenAI-compatible base URL: OpenAI, Azure OpenAI,
    vLLM, Ollama, llama.cpp server) or ``anthropic`` (the Messages API; requests
    are translated). The API key comes from ``api_key`` or the environment
    variable ``api_key_env``; it is never logged or shown in errors or metrics.
    ``first_token_timeout`` bounds the wait for the first streamed event,
    ``read_timeout`` a whole non-streamed answer and each gap in a stream.
    ``forward_headers`` names client request headers passed on to this upstream
    (lower case; a trailing ``*`` makes a prefix, e.g. ``x-mock-*``); no other client
    header is forwarded.
    """

    name: str
    base_url: str
    kind: UpstreamKind = "openai"
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    connect_timeout: float = 10.0
    read_timeout: float = 600.0
    first_token_timeout: float = 120.0
    max_connections: int = 512
    forward_headers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_text(self.name, "upstream name")
        where = f"upstreams.{self.name}"
        check_http_url(self.base_url, f"{where}.base_url")
        if self.kind not in _KINDS:
            raise ConfigError(f"{where}.kind must be one of {_KINDS}, got {self.kind!r}")
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key):
            # The value is a secret: say what is wrong without echoing it.
            raise ConfigError(f"{where}.api_key must be a non-empty string")
        if self.api_key_env is not None:
            check_text(self.api_key_env, f"{where}.api_key_env")
        if not isinstance(self.headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()
        ):
            raise ConfigError(f"{where}.headers must map strings to strings")
        object.__setattr__(self, "headers", _frozen(self.headers))
        for name in ("connect_timeout", "read_timeout", "first_token_timeout"):
            check_positive(getattr(self, name), f"{where}.{name}")
        check_count(self.max_connections, f"{where}.max_connections")
        if not isinstance(self.forward_headers, tuple | list) or not all(
            isinstance(h, str) and h for h in self.forward_headers
        ):
            raise ConfigError(
                f"{where}.forward_headers must be a list of header names, "
                f"got {self.forward_headers!r}"
            )
        object.__setattr__(self, "forward_headers", tuple(h.lower() for h in self.forward_headers))

    def resolved_api_key(self) -> str | None:
        """``api_key``, else the value of ``$api_key_env`` (``None`` if unset)."""
        if self.api_key is not None:
            return self.api_key
        if self.api_key_env is not None:
            return os.environ.get(self.api_key_env) or None
        return None


@dataclass(frozen=True, kw_only=True)
class ModelTarget:
    """One deployment of a public model: an upstream and the model name it knows
    (``None``: the public name unchanged), with its routing ``weight`` and relative
    ``cost`` (e.g. dollars per million tokens)."""

    upstream: str
    model: str | None = None
    weight: float = 1.0
    cost: float = 0.0

    def __post_init__(self) -> None:
        check_text(self.upstream, "models[].deployments[].upstream")
        if self.model is not None:
            check_text(self.model, f"models[].deployments[{self.upstream}].model")
        check_positive(self.weight, f"models[].deployments[{self.upstream}].weight")
        check_non_negative(self.cost, f"models[].deployments[{self.upstream}].cost")


RoutingStrategy = Literal["latency", "weighted", "cost", "order"]
_ROUTING = ("latency", "weighted", "cost", "order")


@dataclass(frozen=True, kw_only=True)
class ModelRoute:
    """Where a public model name goes.

    The short form is one upstream (and the model name it knows); ``deployments``
    lists several, chosen per request by ``routing``: ``latency`` (power of two
    choices over peak-EWMA latency and load), ``weighted``, ``cost`` (cheapest
    healthy) or ``order`` (the first healthy). When every deployment fails, the
    request falls back to the public models in ``fallbacks``, in order. A prompt
    that does not fit ``context_window`` tokens (or an upstream's
    context-length error) goes to ``context_fallback``. ``quality`` (0 to 1)
    scores the model when a ``select`` route weighs it against others.

    A route with ``select`` has no deployments of its own: it picks one of its
    candidate models per request (:class:`SelectConfig`).
    """

    upstream: str = ""
    model: str | None = None
    deployments: tuple[ModelTarget, ...] = ()
    routing: RoutingStrategy = "latency"
    fallbacks: tuple[str, ...] = ()
    context_window: int | None = None
    context_fallback: str | None = None
    quality: float | None = None
    select: SelectConfig | None = None

    def __post_init__(self) -> None:
        if self.quality is not None:
            value = check_non_negative(self.quality, "models[].quality")
            if value > 1:
                raise ConfigError(f"models[].quality must be in [0, 1], got {self.quality!r}")
        if self.select is not None:
            if not isinstance(self.select, SelectConfig):
                raise ConfigError(f"models[].select must be a table, got {self.select!r}")
            if self.upstream or self.deployments:
                given = (
                    f"upstream {self.upstream!r}"
                    if self.upstream
                    else f"deployments {[getattr(d, 'upstream', d) for d in self.deployments]!r}"
                )
                raise ConfigError(
                    "models[] with select picks among other models: it takes no upstream "
                    f"or deployments, got {given}"
                )
            return
        if not self.deployments:
            check_text(self.upstream, "models[].upstream")
            if self.model is not None:
                check_text(self.model, "models[].model")
            object.__setattr__(
                self, "deployments", (ModelTarget(upstream=self.upstream, model=self.model),)
            )
        elif not isinstance(self.deployments, tuple) or not all(
            isinstance(d, ModelTarget) for d in self.deployments
        ):
            raise ConfigError(
                f"models[].deployments must be a list of deployments, got {self.deployments!r}"
            )
        elif not self.upstream:
            first = self.deployments[0]
            object.__setattr__(self, "upstream", first.upstream)
            object.__setattr__(self, "model", first.model)
        names = [(d.upstream, d.model) for d in self.deployments]
        if len(set(names)) != len(names):
            raise ConfigError(f"models[].deployments lists a deployment twice: {names!r}")
        if self.routing not in _ROUTING:
            raise ConfigError(f"models[].routing must be one of {_ROUTING}, got {self.routing!r}")
        if not isinstance(self.fallbacks, tuple) or not all(
            isinstance(f, str) and f for f in self.fallbacks
        ):
            raise ConfigError(
                f"models[].fallbacks must be a list of model names, got {self.fallbacks!r}"
            )
        if self.context_window is not None:
            check_count(self.context_window, "models[].context_window")
        if self.context_fallback is not None:
            check_text(self.context_fallback, "models[].context_fallback")


@dataclass(frozen=True, kw_only=True)
class CacheConfig:
    """The exact cache. ``tiers`` are tier URLs, fastest first; ``ttl`` (seconds)
    applies unless a request says otherwise. ``cache_sampled`` caches answers to
    sampled requests (temperature above 0, the API's default) too: what an agent
    replaying the same step wants, but it pins one sample. ``share_across_tenants``
    lets tenants reuse each other's entries."""

    enabled: bool = True
    tiers: tuple[str, ...] = DEFAULT_TIERS
    ttl: float = 86400.0
    cache_sampled: bool = True
    share_across_tenants: bool = False
    namespace: str = "hp"

    def __post_init__(self) -> None:
        for name in ("enabled", "cache_sampled", "share_across_tenants"):
            check_bool(getattr(self, name), f"cache.{name}")
        if not isinstance(self.tiers, tuple) or not all(isinstance(t, str) for t in self.tiers):
            raise ConfigError(f"cache.tiers must be a list of tier URLs, got {self.tiers!r}")
        if self.enabled and not self.tiers:
            raise ConfigError("cache.tiers must name at least one tier when the cache is on")
        check_positive(self.ttl, "cache.ttl")
        check_text(self.namespace, "cache.namespace")

    @property
    def redis_url(self) -> str | None:
        """The first Redis tier's URL (single-flight across processes uses it)."""
        return next((t for t in self.tiers if t.startswith(("redis", "unix", "rediss"))), None)


@dataclass(frozen=True, kw_only=True)
class GatewayKey:
    """A client key: its SHA-256 (never the key itself) and the tenant it belongs to."""

    name: str
    sha256: str = field(repr=False)
    tenant: str

    def __post_init__(self) -> None:
        check_text(self.name, "keys[].name")
        digest = self.sha256
        if not isinstance(digest, str) or len(digest) != 64 or digest.strip("0123456789abcdef"):
            raise ConfigError(
                f"keys[{self.name}].sha256 must be 64 lowercase hex digits "
                f"(`hotpath hash-key` prints it), got {digest!r}"
            )
        check_text(self.tenant, f"keys[{self.name}].tenant")


@dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    """Everything ``hotpath serve`` needs.

    ``models`` maps public model names to routes; the name ``*`` catches every
    other model. ``max_body_bytes`` bounds a request body (413 above it). With no
    ``keys`` every client is accepted.

    Logs (docs/observability.md): ``log_format`` is ``text`` or ``json`` (one
    object a line), at ``log_level``; ``access_log`` writes one line per request;
    ``log_content`` lets debug lines carry prompt text (never keys). ``observe``
    turns tracing on.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    max_body_bytes: int = 16 * 1024 * 1024
    log_format: LogFormat = "text"
    log_level: str = "info"
    access_log: bool = True
    log_content: bool = False
    upstreams: tuple[UpstreamConfig, ...] = ()
    models: Mapping[str, ModelRoute] = field(default_factory=dict)
    cache: CacheConfig = field(default_factory=CacheConfig)
    keys: tuple[GatewayKey, ...] = ()
    traffic: TrafficConfig = field(default_factory=TrafficConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    observe: ObserveConfig = field(default_factory=ObserveConfig)

    def __post_init__(self) -> None:
        check_text(self.host, "server.host")
        check_log_format(self.log_format)
        object.__setattr__(self, "log_level", check_log_level(self.log_level))
        for name in ("access_log", "log_content"):
            check_bool(getattr(self, name), f"server.{name}")
        if not isinstance(self.observe, ObserveConfig):
            raise ConfigError(f"observe must be a table, got {self.observe!r}")
        check_count(self.port, "server.port", 0)
        if self.port > 65535:
            raise ConfigError(f"server.port must be at most 65535, got {self.port!r}")
        check_count(self.workers, "server.workers")
        check_count(self.max_body_bytes, "server.max_body_bytes")
        names = [u.name for u in self.upstreams]
        if len(set(names)) != len(names):
            raise ConfigError(f"upstream names must be unique, got {names!r}")
        for public, route in self.models.items():
            for target in route.deployments:
                if target.upstream not in names:
                    raise ConfigError(
                        f"models.{public} names upstream {target.upstream!r}, which is not "
                        f"configured (upstreams: {names!r})"
                    )
            for other in (*route.fallbacks, route.context_fallback):
                if other is not None and other not in self.models and "*" not in self.models:
                    raise ConfigError(
                        f"models.{public} falls back to {other!r}, which is not a configured "
                        f"model (models: {sorted(self.models)!r})"
                    )
        self._check_selection()
        object.__setattr__(self, "models", MappingProxyType(dict(self.models)))
        digests = [k.sha256 for k in self.keys]
        if len(set(digests)) != len(digests):
            raise ConfigError("keys must be distinct: two entries have the same sha256")

    def _check_selection(self) -> None:
        models = self.models
        for public, route in models.items():
            if route.select is None:
                continue
            if public == "*":
                raise ConfigError("models.* cannot select: name the selecting model")
            for name in route.select.candidates:
                candidate = models.get(name)
                if candidate is None or candidate.select is not None:
                    raise ConfigError(
                        f"models.{public}.select.candidates names {name!r}, which is not a "
                        f"configured model with deployments (models: {sorted(models)!r})"
                    )
                if candidate.quality is None:
                    raise ConfigError(
                        f"models.{name}.quality must be set (0 to 1): models.{public} "
                        "selects among its candidates by quality"
                    )
        for i, rule in enumerate(self.cost.budgets):
            target = rule.downgrade_to
            if target is not None and target not in models and "*" not in models:
                raise ConfigError(
                    f"cost.budgets[{i}].downgrade_to names {target!r}, "
                    f"which is not a configured model (models: {sorted(models)!r})"
                )

    def upstream(self, name: str) -> UpstreamConfig:
        return next(u for u in self.upstreams if u.name == name)
