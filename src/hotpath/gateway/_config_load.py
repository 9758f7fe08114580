"""Build a :class:`GatewayConfig` from a TOML file, ``HOTPATH_*`` variables and flags.

Later sources win: file < environment < flags. Every source is merged into one
TOML-shaped document first, then that document is checked key by key, so an error
names the exact key (``upstreams.openai.read_timeout``) and the value received.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hotpath._errors import ConfigError
from hotpath.gateway._config import (
    CacheConfig,
    GatewayConfig,
    GatewayKey,
    ModelRoute,
    ModelTarget,
    UpstreamConfig,
)
from hotpath.gateway._cost_load import (
    admin_from_document,
    cost_from_document,
    select_from_document,
)
from hotpath.gateway._traffic_load import traffic_from_document
from hotpath.observe._config import ObserveConfig

__all__ = ["ENV_VARS", "config_from_document", "load_config"]

# variable -> (document path, parser)
ENV_VARS: dict[str, tuple[str, str]] = {
    "HOTPATH_HOST": ("server.host", "str"),
    "HOTPATH_PORT": ("server.port", "int"),
    "HOTPATH_WORKERS": ("server.workers", "int"),
    "HOTPATH_MAX_BODY_BYTES": ("server.max_body_bytes", "int"),
    "HOTPATH_LOG_FORMAT": ("server.log_format", "str"),
    "HOTPATH_LOG_LEVEL": ("server.log_level", "str"),
    "HOTPATH_ACCESS_LOG": ("server.access_log", "bool"),
    "HOTPATH_TRACING": ("observe.tracing", "bool"),
    "HOTPATH_TRACING_EXPORTER": ("observe.exporter", "str"),
    "HOTPATH_UPSTREAM": ("upstream.base_url", "str"),
    "HOTPATH_UPSTREAM_KIND": ("upstream.kind", "str"),
    "HOTPATH_UPSTREAM_API_KEY_ENV": ("upstream.api_key_env", "str"),
    "HOTPATH_CACHE": ("cache.enabled", "bool"),
    "HOTPATH_CACHE_TIERS": ("cache.tiers", "list"),
    "HOTPATH_CACHE_TTL": ("cache.ttl", "float"),
    "HOTPATH_CACHE_SAMPLED": ("cache.cache_sampled", "bool"),
    "HOTPATH_CACHE_SHARED": ("cache.share_across_tenants", "bool"),
}

_SECTIONS = {
    "server",
    "upstream",
    "upstreams",
    "models",
    "cache",
    "keys",
    "traffic",
    "cost",
    "admin",
    "observe",
}
_SERVER = {
    "host",
    "port",
    "workers",
    "max_body_bytes",
    "log_format",
    "log_level",
    "access_log",
    "log_content",
}
_OBSERVE = {
    "tracing",
    "exporter",
    "endpoint",
    "service_name",
    "sample_ratio",
    "anomalies",
    "alert_webhook",
}
_UPSTREAM = {
    "kind",
    "base_url",
    "api_key",
    "api_key_env",
    "headers",
    "connect_timeout",
    "read_timeout",
    "first_token_timeout",
    "max_connections",
    "forward_headers",
}
_CACHE = {"enabled", "tiers", "ttl", "cache_sampled", "share_across_tenants", "namespace"}
_KEY = {"name", "sha256", "tenant"}


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> GatewayConfig:
    """The config from ``path`` (TOML; ``$HOTPATH_CONFIG`` when ``None``), the
    ``HOTPATH_*`` variables of ``env`` and ``overrides`` (dotted paths such as
    ``server.port`` or ``upstream.base_url``, from flags). Raises ConfigError."""
    env = env if env is not None else {}
    doc: dict[str, Any] = {}
    path = path or env.get("HOTPATH_CONFIG") or None
    if path is not None:
        doc = _read_toml(Path(path))
    for var, (dotted, kind) in ENV_VARS.items():
        if var in env:
            _put(doc, dotted, _parse_env(var, env[var], kind))
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _put(doc, dotted, value)
    return config_from_document(doc)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc}") from None


def _parse_env(var: str, text: str, kind: str) -> Any:
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        what = "an integer" if kind == "int" else "a number"
        raise ConfigError(f"{var} must be {what}, got {text!r}") from None
    if kind == "bool":
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{var} must be true or false, got {text!r}")
    if kind == "list":
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def _put(doc: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = doc
    for name in parents:
        child = node.setdefault(name, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{name} must be a table, got {child!r}")
        node = child
    node[leaf] = value


def _table(doc: Mapping[str, Any], name: str, allowed: set[str] | None) -> dict[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a table, got {value!r}")
    if allowed is not None:
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ConfigError(f"unknown key {name}.{unknown[0]} (known: {sorted(allowed)})")
    return value


def _build(cls: Any, where: str, values: Mapping[str, Any], **extra: Any) -> Any:
    try:
        return cls(**values, **extra)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def config_from_document(doc: Mapping[str, Any]) -> GatewayConfig:
    """Check a TOML-shaped document and build the config from it."""
    unknown = sorted(set(doc) - _SECTIONS)
    if unknown:
        raise ConfigError(f"unknown config section {unknown[0]!r} (known: {sorted(_SECTIONS)})")
    server = _table(doc, "server", _SERVER)
    upstreams = _upstreams(doc)
    models = _models(doc, upstreams)
    cache_doc = _table(doc, "cache", _CACHE)
    if "tiers" in cache_doc:
        tiers = cache_doc["tiers"]
        if not isinstance(tiers, list | tuple):
            raise ConfigError(f"cache.tiers must be a list of tier URLs, got {tiers!r}")
        cache_doc = {**cache_doc, "tiers": tuple(tiers)}
    cache = _build(CacheConfig, "cache", cache_doc)
    keys_doc = doc.get("keys", [])
    if not isinstance(keys_doc, list):
        raise ConfigError(f"keys must be an array of tables ([[keys]]), got {keys_doc!r}")
    keys = []
    for i, entry in enumerate(keys_doc):
        if not isinstance(entry, dict):
            raise ConfigError(f"keys[{i}] must be a table, got {entry!r}")
        extra = sorted(set(entry) - _KEY)
        if extra:
            raise ConfigError(f"unknown key keys[{i}].{extra[0]} (known: {sorted(_KEY)})")
        entry = {"tenant": entry.get("name", ""), **entry}
        keys.append(_build(GatewayKey, f"keys[{i}]", entry))
    config: GatewayConfig = _build(
        GatewayConfig,
        "server",
        server,
        upstreams=tuple(upstreams),
        models=models,
        cache=cache,
        keys=tuple(keys),
        traffic=traffic_from_document(doc.get("traffic", {})),
        cost=cost_from_document(doc.get("cost", {})),
        admin=admin_from_document(doc.get("admin", {})),
        observe=_build(ObserveConfig, "observe", _table(doc, "observe", _OBSERVE)),
    )
    return config


def _upstreams(doc: Mapping[str, Any]) -> list[UpstreamConfig]:
    out: list[UpstreamConfig] = []
    shorthand = _table(doc, "upstream", _UPSTREAM)
    if shorthand:
        if "base_url" not in shorthand:
            raise ConfigError("upstream needs base_url (--upstream URL or HOTPATH_UPSTREAM)")
        out.append(_build(UpstreamConfig, "upstream", shorthand, name="default"))
    for name, table in _table(doc, "upstreams", None).items():
        if not isinstance(table, dict):
            raise ConfigError(f"upstreams.{name} must be a table, got {table!r}")
        extra = sorted(set(table) - _UPSTREAM)
        if extra:
            raise ConfigError(
                f"unknown key upstreams.{name}.{extra[0]} (known: {sorted(_UPSTREAM)})"
            )
        if "base_url" not in table:
            raise ConfigError(f"upstreams.{name} needs base_url")
        if isinstance(table.get("forward_headers"), list):
            table = {**table, "forward_headers": tuple(table["forward_headers"])}
        out.append(_build(UpstreamConfig, f"upstreams.{name}", table, name=name))
    return out


_ROUTE_KEYS = {
    "upstream",
    "model",
    "deployments",
    "routing",
    "fallbacks",
    "context_window",
    "context_fallback",
    "quality",
    "select",
}
_TARGET_KEYS = {"upstream", "model", "weight", "cost"}


def _route(public: str, spec: dict[str, Any]) -> ModelRoute:
    extra = sorted(set(spec) - _ROUTE_KEYS)
    if extra:
        raise ConfigError(f"unknown key models.{public}.{extra[0]} (known: {sorted(_ROUTE_KEYS)})")
    if "select" in spec:
        values = dict(spec)
        values["select"] = select_from_document(spec["select"], f"models.{public}.select")
        selecting: ModelRoute = _build(ModelRoute, f"models.{public}", values)
        return selecting
    if ("upstream" in spec) == ("deployments" in spec):
        raise ConfigError(
            f"models.{public} needs either upstream (one deployment) or deployments "
            f"(a list), got {spec!r}"
        )
    values = dict(spec)
    targets = values.pop("deployments", None)
    if targets is not None:
        if not isinstance(targets, list) or not targets:
            raise ConfigError(
                f"models.{public}.deployments must be a non-empty list of "
                f"{{ upstream = ..., model = ... }}, got {targets!r}"
            )
        built = []
        for i, target in enumerate(targets):
            where = f"models.{public}.deployments[{i}]"
            if isinstance(target, str):
                target = {"upstream": target}
            if not isinstance(target, dict):
                raise ConfigError(f"{where} must be a table or an upstream name, got {target!r}")
            unknown = sorted(set(target) - _TARGET_KEYS)
            if unknown:
                raise ConfigError(
                    f"unknown key {where}.{unknown[0]} (known: {sorted(_TARGET_KEYS)})"
                )
            built.append(_build(ModelTarget, where, target))
        values["deployments"] = tuple(built)
    if isinstance(values.get("fallbacks"), list):
        values["fallbacks"] = tuple(values["fallbacks"])
    route: ModelRoute = _build(ModelRoute, f"models.{public}", values)
    return route


def _models(doc: Mapping[str, Any], upstreams: list[UpstreamConfig]) -> dict[str, ModelRoute]:
    models: dict[str, ModelRoute] = {}
    for public, spec in _table(doc, "models", None).items():
        if isinstance(spec, str):
            models[public] = ModelRoute(upstream=spec)
        elif isinstance(spec, dict):
            try:
                models[public] = _route(public, spec)
            except ConfigError as exc:
                message = str(exc).replace("models[]", f"models.{public}")
                raise ConfigError(message) from None
        else:
            raise ConfigError(f"models.{public} must be an upstream name, got {spec!r}")
    shorthand = next((u for u in upstreams if u.name == "default"), None)
    if "*" not in models and shorthand is not None and "upstream" in doc:
        # --upstream URL / HOTPATH_UPSTREAM: every model not mapped goes to it.
        models["*"] = ModelRoute(upstream=shorthand.name)
    elif not models and len(upstreams) == 1:
        # One upstream and no model map: every model name goes to it.
        models["*"] = ModelRoute(upstream=upstreams[0].name)
    return models
