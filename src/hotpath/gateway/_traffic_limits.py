"""Rate limits in the gateway: the front-door rules (global, key, tenant, model),
checked before the cache, and the deployment rules, checked on each try.

One limiter holds every counter: :class:`LocalRateLimiter` in the process, or
:class:`RedisRateLimiter` shared by every replica, one round trip per decision.
Token limits are charged a reservation (prompt plus completion ceiling) that is
settled against the answer's ``usage`` afterwards, in the background.
"""

from __future__ import annotations

import asyncio

from hotpath._clock import Clock
from hotpath._errors import RateLimitedError
from hotpath.gateway._api_errors import ApiError, traffic_api_error
from hotpath.gateway._metrics import GatewayMetrics
from hotpath.gateway._traffic_config import LimitRule, TrafficConfig
from hotpath.gateway._traffic_context import CallContext, Reservation
from hotpath.traffic._gcra import Limit, LocalRateLimiter, Rate
from hotpath.traffic._rate_redis import UNAVAILABLE, RedisRateLimiter

__all__ = ["GatewayLimits"]

_Rules = tuple[list[Limit], list[tuple[str, Rate]]]
_INF = float("inf")


class GatewayLimits:
    """The rate limits of one gateway process."""

    def __init__(
        self,
        settings: TrafficConfig,
        metrics: GatewayMetrics,
        clock: Clock,
        *,
        redis_url: str | None,
        prefix: str,
        per_key: bool = False,
    ) -> None:
        self._settings = settings
        self.metrics = metrics
        self.clock = clock
        self._front = [r for r in settings.limits if r.scope != "deployment"]
        self._front_cache: dict[tuple[str, str, str], _Rules] = {}
        self._deployment_rules = [r for r in settings.limits if r.scope == "deployment"]
        self._tpm = any(r.tpm is not None for r in settings.limits)
        self.limiter: LocalRateLimiter | RedisRateLimiter | None = None
        if settings.limits or per_key:
            # per_key: keys made through the admin API may carry their own limits.
            if redis_url is not None:
                self.limiter = RedisRateLimiter(
                    redis_url, prefix=prefix, on_error=settings.on_redis_error
                )
            else:
                self.limiter = LocalRateLimiter(clock=clock)
        self._settling: set[asyncio.Task[None]] = set()

    async def aclose(self) -> None:
        for task in list(self._settling):
            task.cancel()
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)
        if self.limiter is not None:
            await self.limiter.aclose()

    @property
    def counts_tokens(self) -> bool:
        """Whether some configured limit needs the request's token count (a key's
        own ``tpm`` is checked by the caller)."""
        return self._tpm

    def _front_rules(
        self, key: str, tenant: str, model: str
    ) -> tuple[list[Limit], list[tuple[str, Rate]]]:
        requests: list[Limit] = []
        token_limits: list[tuple[str, Rate]] = []
        for rule in self._front:
            if rule.scope == "global":
                value = "*"
            elif rule.scope == "key":
                value = key
            elif rule.scope == "tenant":
                value = tenant
            else:
                value = model
            if rule.match != "*" and rule.match != value:
                continue
            _split_rule(rule, value, requests, token_limits)
        return requests, token_limits

    async def admit(
        self,
        ctx: CallContext,
        *,
        key: str,
        tenant: str,
        model: str,
        own: tuple[LimitRule, ...] = (),
    ) -> Reservation | None:
        """Charge the front-door limits for one request (waiting, in queue mode, up
        to the request's deadline); raise an ApiError 429 if it may not go. ``own``
        are the key's own limits (a key made through the admin API); a key's
        limits never change, so they are cached with the configured ones."""
        limiter = self.limiter
        if limiter is None or not (self._front or own):
            return None
        found = self._front_cache.get((key, tenant, model))
        if found is None:
            found = self._front_rules(key, tenant, model)
            for rule in own:
                _split_rule(rule, key, found[0], found[1])
            if len(self._front_cache) >= 10_000:
                self._front_cache.clear()
            self._front_cache[(key, tenant, model)] = found
        # Which rules apply to a (key, tenant, model) is worked out once; only the
        # token costs change per request.
        requests, token_limits = found
        tokens = ctx.tokens
        limits = requests
        if token_limits:
            limits = [*requests, *(Limit(name, rate, tokens) for name, rate in token_limits)]
        if not limits:
            return None
        try:
            await self._acquire(limiter, limits, ctx, "request")
        except RateLimitedError as exc:
            raise _refusal(exc) from None
        return Reservation(tokens, token_limits) if token_limits else None

    async def _acquire(
        self,
        limiter: LocalRateLimiter | RedisRateLimiter,
        limits: list[Limit],
        ctx: CallContext,
        scope: str,
    ) -> None:
        queue = self._settings.on_limit == "queue"
        wait_budget = max(0.0, ctx.deadline - self.clock.monotonic()) if queue else 0.0
        if isinstance(limiter, LocalRateLimiter):
            decision = limiter.decide(limits, max_wait=wait_budget)  # no await: no I/O
        else:
            decision = await limiter.acquire(limits, max_wait=wait_budget)
            if decision.limit == UNAVAILABLE or (decision.allowed and decision.remaining == _INF):
                # Decided without Redis (it is down): by on_error, open or closed.
                metrics = self.metrics
                mode = self._settings.on_redis_error
                metrics.child(metrics.rate_limit_unavailable, mode).inc()
        metrics = self.metrics
        if not decision.allowed:
            metrics.child(metrics.rate_limited, scope, "limited").inc()
            limit = decision.limit or "unknown"
            if decision.retry_after == _INF:
                message = (
                    f"request needs {ctx.tokens} tokens, more than the limit {limit} "
                    "allows at once: it can never pass; lower max_tokens or the prompt"
                )
            else:
                message = f"rate limit {limit} reached; retry after {decision.retry_after:.3g} s"
            raise RateLimitedError(message, limit=limit, retry_after=decision.retry_after)
        if decision.wait > 0:
            metrics.child(metrics.rate_limited, scope, "queued").inc()
            await asyncio.sleep(decision.wait)
        else:
            metrics.child(metrics.rate_limited, scope, "allowed").inc()

    def settle(self, reservation: Reservation | None, used: int | None) -> None:
        """Correct a token reservation by what the call really used: at once in
        the process, in the background over Redis (it must not hold the response)."""
        limiter = self.limiter
        if reservation is None or limiter is None or reservation.settled:
            return
        reservation.settled = True
        if used is None:
            return  # the answer said nothing: the reservation stands
        delta = used - reservation.tokens
        if delta == 0:
            return
        if isinstance(limiter, LocalRateLimiter):
            for key, rate in reservation.limits:
                limiter.adjust(key, rate, delta)  # a dict update: no task needed
            return
        task = asyncio.get_running_loop().create_task(self._settle(limiter, reservation, delta))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    @staticmethod
    async def _settle(limiter: RedisRateLimiter, reservation: Reservation, delta: int) -> None:
        for key, rate in reservation.limits:
            await limiter.settle(key, rate, delta)

    async def deployment(self, name: str, ctx: CallContext) -> Reservation | None:
        """Charge the limits of the deployment ``name`` for one try; raise
        RateLimitedError (another deployment or a fallback may take the call)."""
        limiter = self.limiter
        if limiter is None or not self._deployment_rules:
            return None
        limits: list[Limit] = []
        for rule in self._deployment_rules:
            if rule.match == "*" or rule.match == name:
                limits.extend(_rule_limits(rule, name, ctx.tokens))
        if not limits:
            return None
        # Refused: RateLimitedError, and another deployment or a fallback may still
        # take the call.
        await self._acquire(limiter, limits, ctx, "deployment")
        tpm = [(lim.key, lim.rate) for lim in limits if lim.key.endswith(":tpm")]
        return Reservation(ctx.tokens, tpm) if tpm else None


def _refusal(exc: RateLimitedError) -> ApiError:
    """The 429 for a request the front door refused."""
    if exc.retry_after == _INF:
        return ApiError(
            429,
            str(exc),
            type="rate_limit_error",
            code="request_too_large",
            headers={"x-hotpath-rate-limit": exc.limit},
        )
    return traffic_api_error(exc)


def _split_rule(
    rule: LimitRule,
    value: str,
    requests: list[Limit],
    token_limits: list[tuple[str, Rate]],
) -> None:
    """Add ``rule``'s limits for ``value``: its rpm as a ready Limit (it always
    costs 1), its tpm as (key, rate), whose cost each request sets."""
    base = f"{rule.scope}:{value}"
    if rule.rpm is not None:
        rate = Rate(limit=rule.rpm, period=60.0, burst=rule.burst)
        requests.append(Limit(f"{base}:rpm", rate, 1))
    if rule.tpm is not None:
        token_limits.append(
            (f"{base}:tpm", Rate(limit=rule.tpm, period=60.0, burst=rule.token_burst))
        )


def _rule_limits(rule: LimitRule, value: str, tokens: int) -> list[Limit]:
    requests: list[Limit] = []
    token_limits: list[tuple[str, Rate]] = []
    _split_rule(rule, value, requests, token_limits)
    return [*requests, *(Limit(name, rate, tokens) for name, rate in token_limits)]
