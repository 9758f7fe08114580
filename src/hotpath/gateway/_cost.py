"""Cost in the gateway: prices, usage booked per request, budgets enforced
before a call goes, savings booked per cache hit, and budget alerts.

Every upstream call is booked in the :class:`~hotpath.cost.Ledger` by key,
tenant, public model, deployment and day, with the tokens of the upstream's
``usage`` (counted here with ``bpe-openai`` when it sent none) and their cost
from the price table of the deployment's model. A call first reserves its
estimated cost (prompt tokens plus the completion ceiling) on every budget
that applies; the reservation is swapped for the real cost once the call is
answered, released for a cache hit or a joined flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from hotpath._clock import Clock
from hotpath._errors import BudgetExceededError, TrafficError
from hotpath.cost._budget import BudgetEvent, BudgetHold, BudgetRule, Budgets, usd
from hotpath.cost._budget_redis import RedisBudgetStore
from hotpath.cost._budget_store import BudgetStore, LocalBudgetStore
from hotpath.cost._ledger import Ledger, open_ledger_store
from hotpath.cost._periods import PERIODS, window
from hotpath.cost._prices import Price, PriceTable
from hotpath.cost._usage import Usage
from hotpath.gateway._api_errors import ApiError, traffic_api_error
from hotpath.gateway._config import GatewayConfig
from hotpath.gateway._metrics import GatewayMetrics
from hotpath.observe._webhook import Webhook

__all__ = ["GatewayCost", "budget_api_error"]

log = logging.getLogger("hotpath.gateway")

DEFAULT_USAGE_STORE = "sqlite:///.hotpath/usage.db"
_NANOS = 1_000_000_000


class GatewayCost:
    """Prices, the usage ledger and the budgets of one gateway process."""

    def __init__(
        self,
        config: GatewayConfig,
        metrics: GatewayMetrics,
        clock: Clock,
        *,
        redis_url: str | None,
    ) -> None:
        settings = config.cost
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        namespace = config.cache.namespace
        self.prices = PriceTable.default().with_overrides(settings.prices, where="cost.prices")
        self.ledger: Ledger | None = None
        if settings.enabled:
            url = settings.store or redis_url or DEFAULT_USAGE_STORE
            self.ledger = Ledger(
                open_ledger_store(url, prefix=f"{namespace}:"),
                clock=clock,
                flush_interval=settings.flush_interval,
                retention_days=settings.retention_days,
            )
        budget_url = settings.budget_store or redis_url
        store: BudgetStore
        if budget_url is not None and not budget_url.startswith(("memory://", "sqlite://")):
            store = RedisBudgetStore(budget_url, prefix=f"{namespace}:budget:")
            self.shared_budgets = True
        else:
            store = LocalBudgetStore()
            self.shared_budgets = False
        self.budgets = Budgets(
            settings.budgets,
            store=store,
            prefix=f"{namespace}:budget:",
            clock=clock,
            settle_after=settings.settle_after,
            on_error=settings.on_redis_error,
            on_event=self._on_event,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._webhook: Webhook | None = None
        if settings.alert_webhook is not None:
            self._webhook = Webhook(
                settings.alert_webhook,
                on_failure=lambda: metrics.child(metrics.webhook_failures).inc(),
            )
        self._exported: dict[str, int] = {}
        self._per_key_budgets = config.admin.enabled  # keys may carry budgets

    # -- life cycle ----------------------------------------------------------------

    async def start(self) -> None:
        if self.ledger is not None:
            await self.ledger.start()
            if not self.shared_budgets and self.budgets.rules:
                await self._seed_local_budgets()
        await self.budgets.start(sweep=self._per_key_budgets)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            if not task.done():
                await asyncio.wait([task], timeout=2.0)
        await self.budgets.aclose()
        if self.ledger is not None:
            await self.ledger.aclose()
        if self._webhook is not None:
            await self._webhook.aclose()

    async def _seed_local_budgets(self) -> None:
        """Budgets held in this process start from what the usage ledger booked in
        their current periods, so a restart does not hand out a fresh budget."""
        assert self.ledger is not None
        store = self.budgets.store
        assert isinstance(store, LocalBudgetStore)
        now = self.clock.now()
        windows = {p: window(p, now) for p in PERIODS}
        earliest = min(windows["month"].start, windows["week"].start)
        since = _iso_day(earliest)
        try:
            rows = await self.ledger.report(by=("day", "key", "tenant", "model"), since=since)
        except Exception as exc:  # noqa: BLE001 - budgets start empty; said loudly
            log.warning("budgets start from zero: the usage store could not be read (%s)", exc)
            return
        totals: dict[str, int] = {}
        for row in rows:
            cost = round(row.cost_usd * _NANOS)
            if not cost:
                continue
            day = row.group["day"]
            values = {
                "global": "*",
                "key": row.group["key"],
                "tenant": row.group["tenant"],
                "model": row.group["model"],
            }
            for period, win in windows.items():
                if day < _iso_day(win.start):
                    continue
                for scope, value in values.items():
                    name = self.budgets.counter_key_for(scope, value, period, win.label)
                    totals[name] = totals.get(name, 0) + cost
        for name, spent in totals.items():
            store.seed(name, spent, int(now) + 40 * 86400)

    def export(self, extra: dict[str, int] | None = None) -> None:
        """Bring the store-failure counters of /metrics up to date (read at scrape
        time from the budgets' and the ledger's own counts, and ``extra``)."""
        counts = {"budget": self.budgets.stats.store_errors, **(extra or {})}
        if self.ledger is not None:
            counts["usage"] = self.ledger.stats.flush_failures
        metric = self.metrics.budget_store_errors
        for store, count in counts.items():
            delta = count - self._exported.get(store, 0)
            if delta > 0:
                self.metrics.child(metric, store).inc(delta)
            self._exported[store] = count

    # -- prices ----------------------------------------------------------------------

    def price(self, model: str) -> Price | None:
        return self.prices.lookup(model)

    def estimate(self, model: str, prompt: int, completion: int) -> float | None:
        """USD a call of ``prompt`` tokens and at most ``completion`` tokens costs
        on ``model`` at most (``None``: no price)."""
        price = self.prices.lookup(model)
        if price is None:
            return None
        return (prompt * price.input + completion * price.output) / 1e6

    def cost(self, model: str, usage: Usage) -> float | None:
        return self.prices.cost(model, usage)

    # -- budgets ---------------------------------------------------------------------

    def has_budgets(self, extra: Sequence[BudgetRule]) -> bool:
        return bool(self.budgets.rules) or bool(extra)

    async def reserve(
        self,
        *,
        key: str,
        tenant: str,
        model: str,
        estimate: float | None,
        downgrade_estimate: Any,
        extra: Sequence[BudgetRule] = (),
    ) -> BudgetHold | None:
        """Reserve the call's estimated cost on its budgets (``None`` if none
        applies); an ApiError 429 when a budget refuses it."""
        try:
            hold = await self.budgets.reserve(
                key=key,
                tenant=tenant,
                model=model,
                estimate=estimate or 0.0,
                downgrade_estimate=downgrade_estimate,
                extra=extra,
            )
        except BudgetExceededError as exc:
            self.metrics.child(self.metrics.budget_refused, self.metrics.bounded(exc.budget)).inc()
            raise budget_api_error(exc) from None
        except TrafficError as exc:  # the store is down and budgets fail closed
            raise traffic_api_error(exc) from None
        if hold is not None:
            for status in hold.budgets:
                self.metrics.child(
                    self.metrics.budget_ratio, self.metrics.bounded(status.name)
                ).set(status.ratio)
        return hold

    def settle(self, hold: BudgetHold | None, cost: float | None) -> None:
        """Swap the hold for ``cost``: at once in the process, in the background
        over Redis (a round trip must not hold the response)."""
        if self.budgets.settle_now(hold, cost):
            return  # no I/O: done without a task
        self._spawn(self.budgets.settle(hold, cost))

    async def settle_wait(self, hold: BudgetHold | None, cost: float | None) -> None:
        """Swap the hold for ``cost`` now, awaiting the store (bounded by its
        timeout; a failure is queued, never raised)."""
        if not self.budgets.settle_now(hold, cost):
            await self.budgets.settle(hold, cost)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- booking ---------------------------------------------------------------------

    def book(
        self,
        *,
        key: str,
        tenant: str,
        model: str,
        deployment: str,
        upstream_model: str,
        usage: Usage | None,
    ) -> float | None:
        """Book one upstream call (``usage`` ``None``: it failed); its cost."""
        cost = self.prices.cost(upstream_model, usage) if usage is not None else 0.0
        metrics = self.metrics
        label = metrics.bounded(model)
        if usage is not None:
            if cost is None:
                metrics.child(metrics.unpriced, label).inc()
            else:
                metrics.child(metrics.cost, label).inc(cost)
            tokens = metrics.tokens
            metrics.child(tokens, label, "prompt").inc(usage.prompt_tokens)
            metrics.child(tokens, label, "completion").inc(usage.completion_tokens)
            if usage.cached_tokens:
                metrics.child(tokens, label, "cached").inc(usage.cached_tokens)
        if self.ledger is not None:
            self.ledger.record(
                key=key,
                tenant=tenant,
                model=model,
                deployment=deployment,
                usage=usage,
                cost=cost,
                error=usage is None,
            )
        return cost

    def book_saving(
        self,
        *,
        key: str,
        tenant: str,
        model: str,
        deployment: str,
        upstream_model: str,
        usage: Usage | None,
        latency: float | None,
        how: str,
    ) -> None:
        """Book a request answered without an upstream call (``how``: ``hit`` or
        ``coalesced``): the cost and latency it avoided."""
        cost = self.prices.cost(upstream_model, usage) if usage is not None else None
        metrics = self.metrics
        label = metrics.bounded(model)
        if cost is not None:
            metrics.child(metrics.saved, label, how).inc(cost)
        if latency:
            metrics.child(metrics.saved_latency, label, how).inc(latency)
        if self.ledger is not None:
            self.ledger.record_saving(
                key=key,
                tenant=tenant,
                model=model,
                deployment=deployment,
                cost=cost,
                latency=latency or 0.0,
                kind="hit" if how == "hit" else "coalesced",
            )

    # -- alerts ----------------------------------------------------------------------

    def _on_event(self, event: BudgetEvent) -> None:
        status = event.budget
        metrics = self.metrics
        metrics.child(metrics.budget_events, metrics.bounded(status.name), event.kind).inc()
        if event.kind == "alert":
            log.warning(
                "budget %s at %.0f%%: %s of %s used (resets %s)",
                status.name,
                status.ratio * 100,
                usd(status.spent + status.reserved),
                usd(status.limit),
                status.reset_at,
            )
        elif event.kind == "exhausted":
            log.warning(
                "budget %s refused a request (%s of %s spent or reserved); it resets %s",
                status.name,
                usd(status.spent + status.reserved),
                usd(status.limit),
                status.reset_at,
            )
        else:
            log.info(
                "budget %s at %.0f%%: downgrading %s", status.name, status.ratio * 100, event.model
            )
        if self._webhook is not None:
            self._webhook.send(
                {
                    "event": f"budget.{event.kind}",
                    "budget": status.name,
                    "limit_usd": status.limit,
                    "spent_usd": status.spent,
                    "reserved_usd": status.reserved,
                    "ratio": status.ratio,
                    "reset_at": status.reset_at,
                    "key": event.key,
                    "tenant": event.tenant,
                    "model": event.model,
                    "at": self.clock.now(),
                }
            )


def budget_api_error(exc: BudgetExceededError) -> ApiError:
    """The 429 for a request a budget refused (OpenAI's quota error shape)."""
    headers = {"x-hotpath-budget": exc.budget}
    if exc.retry_after is not None:
        headers["retry-after"] = str(int(exc.retry_after))
    return ApiError(
        429, str(exc), type="insufficient_quota", code="budget_exceeded", headers=headers
    )


def _iso_day(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def usage_of(payload: Any) -> Usage | None:
    """The usage of a parsed completion or chunk, if it has one."""
    if isinstance(payload, dict):
        return Usage.from_openai(payload.get("usage"))
    return None
