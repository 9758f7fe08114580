"""Public model names resolved to their deployments.

A :class:`Resolved` model is what a request's ``model`` means: its config
(:class:`ModelRoute`), its deployments as :class:`Route` objects (a provider and
the model name that provider knows) and the router that picks among them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hotpath.gateway._config import ModelRoute
from hotpath.providers._base import Provider
from hotpath.traffic._router import Router

__all__ = ["Resolved", "Route", "Target"]


@dataclass(frozen=True, slots=True)
class Route:
    """One deployment: the provider that answers and the model name it knows.
    ``name`` (``upstream/model``) labels it in limits, metrics and headers."""

    provider: Provider
    deployment: str
    forward: tuple[str, ...] = ()
    name: str = ""

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

    def span_attributes(self, attempt: int) -> dict[str, object]:
        """The attributes of an ``upstream attempt`` span on this deployment."""
        return {
            "hotpath.deployment": self.name,
            "hotpath.upstream": self.provider.name,
            "gen_ai.request.model": self.deployment,
            "hotpath.attempt": attempt,
        }


Target = Route


@dataclass(frozen=True, slots=True)
class Resolved:
    """A public model: its config, its deployments (the first is the primary,
    whose identity the cache key binds) and their router."""

    public: str
    spec: ModelRoute
    targets: tuple[Route, ...]
    router: Router
    by_name: dict[str, Route] = field(default_factory=dict)

    @property
    def primary(self) -> Route:
        return self.targets[0]
