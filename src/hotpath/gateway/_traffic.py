"""Traffic control for the gateway: the policies of :mod:`hotpath.traffic`, built
from the config and composed around every upstream call.

A request passes the front-door rate limits (per key, tenant, model, or all
together) before the cache. A miss then runs :meth:`Traffic.execute`: the
model's router picks a healthy deployment; the provider's own rate-limit
headers, the deployment's limits, its circuit breaker and its adaptive
concurrency limiter each may hold or refuse the attempt; a retryable failure is
retried (another deployment first, backoff with full jitter, within the retry
budget) and, when the model gives up, the request falls back along the model's
``fallbacks`` (a context-length error goes to its ``context_fallback``).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from hotpath._clock import Clock
from hotpath._errors import (
    CircuitOpenError,
    OverloadedError,
    RateLimitedError,
    TrafficError,
    UpstreamStatusError,
)
from hotpath.gateway._api_errors import ApiError
from hotpath.gateway._asgi import Request
from hotpath.gateway._config import GatewayConfig
from hotpath.gateway._metrics import GatewayMetrics
from hotpath.gateway._resolve import Resolved, Target
from hotpath.gateway._traffic_context import CallContext, is_context_error
from hotpath.gateway._traffic_limits import GatewayLimits
from hotpath.providers._base import Provider
from hotpath.traffic._breaker import CircuitBreaker
from hotpath.traffic._breaker_redis import RedisBreakerSync
from hotpath.traffic._concurrency import ConcurrencyLimiter, Permit
from hotpath.traffic._limit_algorithms import algorithm_from_name
from hotpath.traffic._provider_limits import ProviderLimits
from hotpath.traffic._retry import RetryState, is_retryable
from hotpath.traffic._retry_budget import RetryBudget
from hotpath.traffic._router import Router

__all__ = ["Traffic"]

log = logging.getLogger("hotpath.gateway")

T = TypeVar("T")

_PRIORITY = b"x-hotpath-priority"
_MAX_WAIT = b"x-hotpath-max-wait"
_BREAKER_STATES = {"closed": 0, "open": 1, "half_open": 2}


class Traffic:
    """The traffic-control state of one gateway process."""

    def __init__(
        self,
        config: GatewayConfig,
        providers: dict[str, Provider],
        metrics: GatewayMetrics,
        clock: Clock,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config.traffic
        self.metrics = metrics
        self.clock = clock
        self.rng = rng or random.Random()
        settings = self.config
        redis_url = settings.redis_url
        if redis_url is None and config.cache.enabled:
            redis_url = config.cache.redis_url
        self.redis_url = redis_url or None
        self.limits = GatewayLimits(
            settings,
            metrics,
            clock,
            redis_url=self.redis_url,
            prefix=f"{config.cache.namespace}:rl:",
            per_key=config.admin.enabled,
        )
        self.budget = RetryBudget(ratio=settings.retry_budget, clock=clock)
        self.breaker_sync: RedisBreakerSync | None = None
        if settings.breaker is not None and self.redis_url is not None:
            self.breaker_sync = RedisBreakerSync(
                self.redis_url, prefix=f"{config.cache.namespace}:cb:", clock=clock
            )
        self._breakers: dict[str, CircuitBreaker] = {}
        self._limiters: dict[str, ConcurrencyLimiter] = {}
        self._shown_limits: dict[str, int] = {}
        self._provider_limits: dict[str, ProviderLimits] = {}
        for name, provider in providers.items():
            provider.on_response = self._observer(name)
        # Breakers of the deployments the config names exist from the start, so the
        # Redis sync reads their shared state before the first request comes.
        for public, route in config.models.items():
            if public != "*":
                for target in route.deployments:
                    self.breaker(f"{target.upstream}/{target.model or public}")

    # -- life cycle ----------------------------------------------------------------

    async def start(self) -> None:
        if self.breaker_sync is not None:
            await self.breaker_sync.start()

    async def aclose(self) -> None:
        await self.limits.aclose()
        if self.breaker_sync is not None:
            await self.breaker_sync.aclose()

    # -- per-deployment state ------------------------------------------------------

    def _observer(self, upstream: str) -> Callable[[str, int, Any], None]:
        def observe(deployment: str, status: int, headers: Any) -> None:
            self.provider_limits(f"{upstream}/{deployment}").observe(status, headers)

        return observe

    def provider_limits(self, name: str) -> ProviderLimits:
        found = self._provider_limits.get(name)
        if found is None:
            found = ProviderLimits(clock=self.clock)
            _put_bounded(self._provider_limits, name, found)
        return found

    def breaker(self, name: str) -> CircuitBreaker | None:
        settings = self.config.breaker
        if settings is None:
            return None
        found = self._breakers.get(name)
        if found is None:
            found = CircuitBreaker(name, settings, clock=self.clock)
            _put_bounded(self._breakers, name, found)
            found.add_listener(self._on_breaker)
            self.metrics.child(self.metrics.breaker_state, self.metrics.bounded(name)).set(0)
            if self.breaker_sync is not None:
                self.breaker_sync.attach(found)
        return found

    def _on_breaker(self, name: str, old: str, new: str) -> None:
        metrics = self.metrics
        label = metrics.bounded(name)
        metrics.child(metrics.breaker_state, label).set(_BREAKER_STATES.get(new, 0))
        metrics.child(metrics.breaker_transitions, label, new).inc()
        level = logging.WARNING if new == "open" else logging.INFO
        log.log(level, "circuit breaker of %s: %s -> %s", name, old, new)

    @property
    def limiters(self) -> Mapping[str, ConcurrencyLimiter]:
        """The concurrency limiters made so far, by deployment name."""
        return self._limiters

    def concurrency(self, name: str) -> ConcurrencyLimiter | None:
        settings = self.config.concurrency
        if not settings.enabled:
            return None
        found = self._limiters.get(name)
        if found is None:
            algorithm = algorithm_from_name(
                settings.algorithm, initial=settings.initial, max_limit=settings.max_limit
            )
            found = ConcurrencyLimiter(
                algorithm,
                name=name,
                priorities=settings.priorities,
                max_queue=settings.max_queue,
                clock=self.clock,
            )
            _put_bounded(self._limiters, name, found)
        return found

    # -- the request's side ----------------------------------------------------------

    def context(self, request: Request) -> CallContext:
        """The request's priority class and how long it may wait in queues
        (``x-hotpath-priority``, ``x-hotpath-max-wait``); 400 for bad values."""
        settings = self.config
        priorities = settings.concurrency.priorities
        priority = settings.concurrency.default_priority
        raw = request.headers.get(_PRIORITY)
        if raw is not None:
            priority = raw.decode("latin-1").strip().lower()
            if priority not in priorities:
                raise ApiError(
                    400,
                    f"header x-hotpath-priority must be one of {sorted(priorities)}, "
                    f"got {priority!r}",
                    param="x-hotpath-priority",
                )
        max_wait = settings.max_wait
        raw = request.headers.get(_MAX_WAIT)
        if raw is not None:
            text = raw.decode("latin-1").strip()
            try:
                asked = float(text)
            except ValueError:
                asked = -1.0
            if not asked >= 0 or asked == float("inf"):
                raise ApiError(
                    400,
                    f"header x-hotpath-max-wait must be a number of seconds >= 0, got {text!r}",
                    param="x-hotpath-max-wait",
                )
            max_wait = min(max_wait, asked)
        ctx = CallContext(priority=priority, max_wait=max_wait)
        ctx.deadline = self.clock.monotonic() + max_wait
        return ctx

    # -- the upstream call -----------------------------------------------------------

    def _healthy(self, name: str) -> bool:
        breaker = self._breakers.get(name)
        if breaker is not None and breaker.state == "open":
            return False
        held = self._provider_limits.get(name)
        return held is None or held.delay() <= 0

    def _pick(self, resolved: Resolved, tried: set[str]) -> Target | None:
        targets = resolved.targets
        if len(targets) == 1:
            # The only deployment: the rules below would come back to it anyway.
            return targets[0]
        router = resolved.router
        by_name = resolved.by_name
        choice = router.pick(exclude=tried, healthy=self._healthy)
        if choice is None:
            # Every healthy deployment was tried: try them again, then the held ones
            # (a wait shorter than the request's deadline beats failing).
            choice = router.pick(healthy=self._healthy) or router.pick(exclude=tried)
        if choice is None:
            choice = router.pick()
        return by_name[choice.name] if choice is not None else None

    async def execute(
        self,
        resolved: Resolved,
        resolve: Callable[[str], Resolved],
        ctx: CallContext,
        attempt: Callable[[Target, Resolved], Awaitable[T]],
        streamed: Callable[[], bool],
    ) -> T:
        """Call ``attempt`` on deployments of ``resolved`` (then of its fallbacks)
        until one answers; raise the last error if none does."""
        chain = [resolved.public, *resolved.spec.fallbacks]
        visited: set[str] = set()
        current = resolved
        window = resolved.spec.context_window
        fallback = resolved.spec.context_fallback
        if window is not None and fallback is not None and ctx.context_tokens > window:
            # It cannot fit: go straight to the model with the larger window.
            self._note_fallback(ctx, resolved.public, fallback, "context_window")
            current = resolve(fallback)
            chain = [fallback, *current.spec.fallbacks]
        position = 0
        while True:
            visited.add(current.public)
            try:
                return await self._on_model(current, ctx, attempt, streamed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if streamed():
                    raise
                target_name: str | None = None
                reason = ""
                if is_context_error(exc) and current.spec.context_fallback is not None:
                    target_name, reason = current.spec.context_fallback, "context_length"
                elif isinstance(exc, TrafficError) or is_retryable(exc):
                    while position + 1 < len(chain) and chain[position + 1] in visited:
                        position += 1
                    if position + 1 < len(chain):
                        position += 1
                        target_name, reason = chain[position], type(exc).__name__
                if target_name is None or target_name in visited:
                    raise
                self._note_fallback(ctx, current.public, target_name, reason)
                current = resolve(target_name)

    def _note_fallback(self, ctx: CallContext, source: str, target: str, reason: str) -> None:
        ctx.fallbacks.append(f"{source}->{target}")
        metrics = self.metrics
        metrics.child(metrics.fallbacks, metrics.bounded(source), metrics.bounded(target)).inc()
        log.info("falling back from %s to %s (%s)", source, target, reason)

    async def _on_model(
        self,
        resolved: Resolved,
        ctx: CallContext,
        attempt: Callable[[Target, Resolved], Awaitable[T]],
        streamed: Callable[[], bool],
    ) -> T:
        retry = RetryState(self.config.retry, budget=self.budget, clock=self.clock, rng=self.rng)
        tried: set[str] = set()
        metrics = self.metrics
        target = self._pick(resolved, tried)
        while True:
            if target is None:
                raise CircuitOpenError(
                    f"no deployment of {resolved.public!r} can take calls", name=resolved.public
                )
            tried.add(target.name)
            try:
                return await self._attempt(target, resolved, ctx, attempt)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                other = resolved.router.pick(exclude=tried, healthy=self._healthy)
                delay = retry.next_delay(exc, streamed=streamed(), elsewhere=other is not None)
                if delay is None:
                    if retry.gave_up not in ("not_retryable", None):
                        metrics.child(metrics.retries_exhausted, retry.gave_up).inc()
                    raise
                remaining = ctx.deadline - self.clock.monotonic()
                if isinstance(exc, TrafficError) and delay > max(0.0, remaining):
                    raise
                metrics.child(
                    metrics.retries, metrics.bounded(target.name), type(exc).__name__
                ).inc()
                if delay > 0:
                    await asyncio.sleep(delay)
                if other is not None:
                    target = resolved.by_name[other.name]
                else:
                    target = self._pick(resolved, tried)

    async def _attempt(
        self,
        target: Target,
        resolved: Resolved,
        ctx: CallContext,
        attempt: Callable[[Target, Resolved], Awaitable[T]],
    ) -> T:
        name = target.name
        metrics = self.metrics
        label = metrics.bounded(name)
        ctx.attempts += 1
        ctx.deployment = name
        ctx.model = resolved.public
        ctx.upstream_model = target.deployment
        ctx.first_byte = None
        ctx.usage = None
        provider = self.provider_limits(name)
        hold = provider.delay(ctx.tokens)
        if hold > 0:
            if hold > ctx.deadline - self.clock.monotonic():
                raise RateLimitedError(
                    f"upstream deployment {name} asked for a pause of {hold:.3g} s",
                    limit=f"provider:{name}",
                    retry_after=hold,
                )
            metrics.child(metrics.provider_waits, label).inc()
            await asyncio.sleep(hold)
        reservation = await self.limits.deployment(name, ctx)
        breaker = self.breaker(name)
        if breaker is not None and not breaker.try_acquire():
            metrics.child(metrics.breaker_rejections, label).inc()
            raise CircuitOpenError(
                f"the circuit breaker of {name} is open", name=name, retry_after=breaker.retry_after
            )
        permit: Permit | None = None
        limiter = self.concurrency(name)
        if limiter is not None:
            timeout = max(0.0, ctx.deadline - self.clock.monotonic())
            try:
                permit = await limiter.acquire(ctx.priority, timeout=timeout)
            except BaseException as exc:
                if breaker is not None:
                    breaker.release()
                if isinstance(exc, OverloadedError):
                    metrics.child(metrics.shed, label, ctx.priority).inc()
                raise
            finally:
                limit = limiter.limit
                if self._shown_limits.get(name) != limit:
                    self._shown_limits[name] = limit
                    metrics.child(metrics.concurrency_limit, label).set(limit)
        router = resolved.router
        router.start(name)
        provider.sent(ctx.tokens)
        metrics.child(metrics.routed, metrics.bounded(resolved.public), label).inc()
        started = self.clock.monotonic()
        try:
            result = await attempt(target, resolved)
        except BaseException as exc:
            duration = self.clock.monotonic() - started
            self._failed(exc, name, duration, breaker, permit, router)
            self.limits.settle(reservation, 0)
            raise
        duration = self.clock.monotonic() - started
        self.limits.settle(reservation, ctx.used_tokens)
        latency = ctx.first_byte if ctx.first_byte is not None else duration
        if permit is not None:
            permit.success(latency)
        if breaker is not None:
            breaker.record_success(latency)
        router.finish(name, latency, ok=True)
        return result

    def _failed(
        self,
        exc: BaseException,
        name: str,
        duration: float,
        breaker: CircuitBreaker | None,
        permit: Permit | None,
        router: Router,
    ) -> None:
        status = exc.status if isinstance(exc, UpstreamStatusError) else None
        overload = status in (429, 503, 529) or (
            status is None and not isinstance(exc, asyncio.CancelledError)
        )
        if permit is not None:
            permit.dropped() if overload else permit.ignore()
        client = client_fault(exc)
        if breaker is not None:
            if isinstance(exc, asyncio.CancelledError) or client:
                # Throttling (429) and bad requests say nothing about the
                # upstream's health; a cancelled call says nothing at all.
                breaker.release()
            else:
                breaker.record_failure(duration)
        router.finish(name, duration, ok=client or isinstance(exc, asyncio.CancelledError))


_MAX_DEPLOYMENTS = 10_000


def _put_bounded(table: dict[str, Any], name: str, value: Any) -> None:
    """Keep per-deployment state for at most ``_MAX_DEPLOYMENTS`` names: with a
    ``"*"`` route the model names, and so the deployments, come from clients.
    The oldest entry goes first (the state of a deployment nobody uses now)."""
    if len(table) >= _MAX_DEPLOYMENTS:
        del table[next(iter(table))]
    table[name] = value


def client_fault(exc: BaseException) -> bool:
    """Whether a failed upstream call failed on the request's account: a 4xx (a bad
    request, or throttling) says nothing about the upstream's health."""
    status = exc.status if isinstance(exc, UpstreamStatusError) else None
    return status is not None and 400 <= status < 500
