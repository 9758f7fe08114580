"""Routing a call among several deployments of one model.

Strategies:

``latency`` (the default)
    Power of two choices over a peak-EWMA load score (as in Finagle and linkerd):
    draw two distinct deployments at random (weighted by ``weight``) and take the
    one with the lower ``peak_ewma_latency * (inflight + 1)``. Two random choices
    spread load almost as well as scanning every deployment, and never herd every
    caller onto the single "best" one. The peak EWMA jumps to a slower sample at
    once and forgets it only gradually, so a deployment that turns slow loses
    traffic immediately and wins it back cautiously.
``weighted``
    Random, in proportion to ``weight``.
``cost``
    The cheapest deployment (ties broken by the latency score, then config order).
``order``
    The first usable deployment in config order (primary, then backups).

Health is not the router's business: the caller passes ``healthy`` (e.g. "its
circuit breaker is not open") and ``exclude`` (deployments already tried for this
call), and the router picks among the rest.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from hotpath._clock import Clock, SystemClock
from hotpath._errors import ConfigError, short_repr
from hotpath._options import check_non_negative, check_positive, check_text

__all__ = ["Deployment", "DeploymentLoad", "Router", "RoutingStrategy"]

RoutingStrategy = Literal["latency", "weighted", "cost", "order"]
_STRATEGIES: tuple[str, ...] = get_args(RoutingStrategy)

# A failed call counts as at least this slow, and the penalty stops doubling here.
_MIN_PENALTY = 1.0
_MAX_PENALTY = 60.0
# Score of a deployment with calls in flight but no latency measured yet: it is
# already being tried, so prefer any measured deployment over piling onto it.
_UNMEASURED_BUSY = 1e9


@dataclass(frozen=True, kw_only=True, slots=True)
class Deployment:
    """One deployment of a model. ``weight`` (> 0) biases random choices; ``cost``
    (>= 0) is its relative price, e.g. dollars per million tokens."""

    name: str
    weight: float = 1.0
    cost: float = 0.0

    def __post_init__(self) -> None:
        check_text(self.name, "name")
        check_positive(self.weight, "weight")
        check_non_negative(self.cost, "cost")


@dataclass(frozen=True, slots=True)
class DeploymentLoad:
    """What the router knows of one deployment: its peak-EWMA latency in seconds
    (0.0 until a call finished), calls in flight, and how often it was picked."""

    ewma: float
    inflight: int
    picks: int


class _Load:
    __slots__ = ("ewma", "inflight", "picks", "stamp")

    def __init__(self) -> None:
        self.ewma = 0.0
        self.stamp = 0.0
        self.inflight = 0
        self.picks = 0


class Router:
    """Picks a deployment for each call and learns from how calls went.

    Call :meth:`pick`, then :meth:`start` when the call is sent and :meth:`finish`
    when it ends (also on failure). ``decay`` is the peak EWMA's time constant in
    seconds. Not thread-safe: use it from one event loop.
    """

    __slots__ = ("_clock", "_decay", "_deployments", "_loads", "_rng", "_strategy")

    def __init__(
        self,
        deployments: Sequence[Deployment],
        *,
        strategy: RoutingStrategy = "latency",
        decay: float = 10.0,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        items: tuple[object, ...] = tuple(deployments)
        if not items:
            raise ConfigError(f"deployments must not be empty, got {short_repr(deployments)}")
        loads: dict[str, _Load] = {}
        checked: list[Deployment] = []
        for deployment in items:
            if not isinstance(deployment, Deployment):
                raise ConfigError(
                    f"deployments must hold Deployment objects, got {short_repr(deployment)}"
                )
            if deployment.name in loads:
                raise ConfigError(f"deployments: duplicate name {deployment.name!r}")
            loads[deployment.name] = _Load()
            checked.append(deployment)
        if strategy not in _STRATEGIES:
            raise ConfigError(
                f"strategy must be one of {', '.join(_STRATEGIES)}, got {short_repr(strategy)}"
            )
        self._deployments = tuple(checked)
        self._loads = loads
        self._strategy: RoutingStrategy = strategy
        self._decay = check_positive(decay, "decay")
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._rng = rng if rng is not None else random.Random()

    @property
    def deployments(self) -> tuple[Deployment, ...]:
        return self._deployments

    @property
    def strategy(self) -> RoutingStrategy:
        return self._strategy

    def pick(
        self,
        *,
        exclude: Collection[str] = (),
        healthy: Callable[[str], bool] | None = None,
    ) -> Deployment | None:
        """A deployment not in ``exclude`` and ``healthy`` (when given), or ``None``
        when none is left."""
        candidates = [
            d
            for d in self._deployments
            if d.name not in exclude and (healthy is None or healthy(d.name))
        ]
        if not candidates:
            return None
        if len(candidates) == 1 or self._strategy == "order":
            chosen = candidates[0]
        elif self._strategy == "latency":
            chosen = self._two_choices(candidates)
        elif self._strategy == "weighted":
            chosen = candidates[self._weighted_index(candidates, skip=-1)]
        else:  # cost; min() keeps the first of equals, so config order breaks the last tie
            now = self._clock.monotonic()
            chosen = min(candidates, key=lambda d: (d.cost, self._score(d.name, now)))
        self._loads[chosen.name].picks += 1
        return chosen

    def start(self, name: str) -> None:
        """A call to ``name`` was sent."""
        self._load(name).inflight += 1

    def finish(self, name: str, latency: float, *, ok: bool) -> None:
        """A call to ``name`` ended after ``latency`` seconds; ``ok=False`` counts it
        as a penalty latency, so a failing deployment is picked less."""
        load = self._load(name)
        if load.inflight > 0:
            load.inflight -= 1
        sample = latency if math.isfinite(latency) and latency > 0 else 0.0
        if not ok:
            penalty = min(_MAX_PENALTY, max(2.0 * load.ewma, _MIN_PENALTY))
            sample = max(sample, penalty)
        now = self._clock.monotonic()
        if sample >= load.ewma:
            load.ewma = sample  # the "peak": slowness counts at once
        else:
            keep = math.exp(-max(0.0, now - load.stamp) / self._decay)
            load.ewma = load.ewma * keep + sample * (1.0 - keep)
        load.stamp = now

    def snapshot(self) -> dict[str, DeploymentLoad]:
        return {
            name: DeploymentLoad(ewma=load.ewma, inflight=load.inflight, picks=load.picks)
            for name, load in self._loads.items()
        }

    def _load(self, name: str) -> _Load:
        try:
            return self._loads[name]
        except KeyError:
            raise ConfigError(f"unknown deployment {short_repr(name)}") from None

    def _score(self, name: str, now: float) -> float:
        load = self._loads[name]
        if load.ewma == 0.0:
            # Unmeasured: the best score, so it gets tried, unless already being tried.
            return _UNMEASURED_BUSY * load.inflight
        # Without new samples the estimate fades toward zero with the same time
        # constant, so a deployment that was slow (or failing) a while ago is tried
        # and measured again instead of being shunned for ever.
        fade = math.exp(-max(0.0, now - load.stamp) / self._decay)
        return load.ewma * fade * (load.inflight + 1)

    def _two_choices(self, candidates: list[Deployment]) -> Deployment:
        first = self._weighted_index(candidates, skip=-1)
        second = self._weighted_index(candidates, skip=first)
        now = self._clock.monotonic()
        a, b = candidates[first], candidates[second]
        return b if self._score(b.name, now) < self._score(a.name, now) else a

    def _weighted_index(self, candidates: list[Deployment], *, skip: int) -> int:
        total = math.fsum(d.weight for i, d in enumerate(candidates) if i != skip)
        point = self._rng.random() * total
        last = -1
        for i, d in enumerate(candidates):
            if i == skip:
                continue
            last = i
            point -= d.weight
            if point < 0:
                return i
        return last  # float rounding left a sliver past the end

    def __repr__(self) -> str:
        names = ", ".join(d.name for d in self._deployments)
        return f"Router([{names}], strategy={self._strategy!r})"
