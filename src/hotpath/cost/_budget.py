"""Spend budgets: per key, tenant, model (or everything), over a UTC day, week
or month, with an alert, a downgrade and a refusal threshold.

:class:`Budgets` turns a call's estimated cost into a reservation on every
budget that applies (one atomic step in the store: see
:mod:`hotpath.cost._budget_store`), reports what the call must do (go,
downgrade to the cheaper model the budget names, or be refused with
:class:`~hotpath.BudgetExceededError`) and later swaps the reservation for the
call's real cost, once. With a Redis store every replica shares the counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from hotpath._clock import Clock, SystemClock
from hotpath._errors import BudgetExceededError, ConfigError, TrafficError
from hotpath._options import check_positive, check_text
from hotpath.cost._budget_store import REFUSED, BudgetStore, Counter, LocalBudgetStore
from hotpath.cost._periods import PERIODS, Period, Window, window

__all__ = ["BudgetEvent", "BudgetHold", "BudgetRule", "BudgetStatus", "Budgets", "usd"]

log = logging.getLogger("hotpath.cost")

Scope = Literal["global", "key", "tenant", "model"]
_SCOPES: tuple[Scope, ...] = ("global", "key", "tenant", "model")
NANOS = 1_000_000_000
_KEEP_AFTER_PERIOD = 7 * 86400


@dataclass(frozen=True, kw_only=True)
class BudgetRule:
    """A budget of ``limit_usd`` per ``period`` for each value of ``scope``
    (``match`` one value, ``"*"`` every value, each with its own counter).

    At ``alert_at`` of the limit an alert goes out (once per period); from
    ``downgrade_at``, calls go to ``downgrade_to`` (a cheaper model) if it is
    set; a call that finds the budget used up, or whose reserved cost would
    cross it, is refused.
    """

    scope: Scope
    limit_usd: float
    match: str = "*"
    period: Period = "month"
    alert_at: float = 0.8
    downgrade_at: float = 0.95
    downgrade_to: str | None = None

    def __post_init__(self) -> None:
        where = f"budgets[{self.scope}:{self.match}]"
        if self.scope not in _SCOPES:
            raise ConfigError(f"budgets[].scope must be one of {_SCOPES}, got {self.scope!r}")
        check_text(self.match, "budgets[].match")
        check_positive(self.limit_usd, f"{where}.limit_usd")
        if self.period not in PERIODS:
            raise ConfigError(f"{where}.period must be one of {PERIODS}, got {self.period!r}")
        for name in ("alert_at", "downgrade_at"):
            value = check_positive(getattr(self, name), f"{where}.{name}")
            if value > 1:
                raise ConfigError(f"{where}.{name} must be in (0, 1], got {value!r}")
        if self.downgrade_to is not None:
            check_text(self.downgrade_to, f"{where}.downgrade_to")

    def value(self, key: str, tenant: str, model: str) -> str | None:
        """The value this rule budgets for a call, or ``None`` if it does not apply."""
        if self.scope == "global":
            return "*"
        value = key if self.scope == "key" else tenant if self.scope == "tenant" else model
        return value if self.match in ("*", value) else None


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """One budget as a call found it: ``spent`` and ``reserved`` (USD) before
    the call, ``ratio`` of the limit used once the call's reservation is counted."""

    name: str
    limit: float
    spent: float
    reserved: float
    ratio: float
    reset_at: str


@dataclass(frozen=True, slots=True)
class BudgetEvent:
    """``alert`` (a budget passed its alert fraction), ``downgrade`` (a call went
    to a cheaper model) or ``exhausted`` (the period's first refusal)."""

    kind: Literal["alert", "downgrade", "exhausted"]
    budget: BudgetStatus
    key: str
    tenant: str
    model: str


@dataclass(slots=True)
class BudgetHold:
    """A call's reservation: ``amount`` nano-dollars on ``counters``; ``model``
    is the model the call must use (``downgrade_to`` when downgraded)."""

    id: str
    amount: int
    counters: tuple[str, ...]
    model: str
    downgraded: bool
    budgets: tuple[BudgetStatus, ...]
    settled: bool = False
    booked: bool = True  # False: the store was down; the cost is booked later

    @property
    def ratio(self) -> float:
        return max((b.ratio for b in self.budgets), default=0.0)


class _StoreRestingError(Exception):
    """The store failed less than ``retry_interval`` ago: it is not asked."""


@dataclass(slots=True)
class BudgetStats:
    reservations: int = 0
    refused: int = 0
    downgraded: int = 0
    alerts: int = 0
    settled: int = 0
    swept: int = 0
    store_errors: int = 0
    skipped: int = 0  # calls decided without the store, which had just failed
    queued: int = 0


class Budgets:
    """The budgets of one gateway (or library user).

    ``store`` holds the counters (default: this process); ``settle_after`` is how
    long a hold may stay unbooked before a sweep books its reserved amount;
    ``on_error`` decides calls while the store fails (``"open"``: let them go and
    book their cost when it is back; ``"closed"``: refuse them); after a fault the
    store is left alone for ``retry_interval`` seconds, so that an outage costs
    callers no timeouts.
    """

    def __init__(
        self,
        rules: Sequence[BudgetRule],
        *,
        store: BudgetStore | None = None,
        prefix: str = "",
        clock: Clock | None = None,
        settle_after: float = 900.0,
        sweep_interval: float = 5.0,
        on_error: Literal["open", "closed"] = "open",
        on_event: Callable[[BudgetEvent], None] | None = None,
        retry_interval: float = 1.0,
    ) -> None:
        for i, rule in enumerate(rules):
            if not isinstance(rule, BudgetRule):
                raise ConfigError(f"budgets[{i}] must be a BudgetRule, got {rule!r}")
        if on_error not in ("open", "closed"):
            raise ConfigError(f"budgets on_error must be 'open' or 'closed', got {on_error!r}")
        self.rules = tuple(rules)
        self.store: BudgetStore = store if store is not None else LocalBudgetStore()
        self._prefix = prefix
        self.clock: Clock = clock or SystemClock()
        self.settle_after = check_positive(settle_after, "settle_after")
        self.sweep_interval = check_positive(sweep_interval, "sweep_interval")
        self.on_error = on_error
        self.on_event = on_event
        self.stats = BudgetStats()
        self._windows: dict[str, Window] = {}  # the current one of each period
        self._node = os.urandom(6).hex()  # hold ids: this process's prefix, a counter
        self._ids = itertools.count()
        # Bookings the store could not take (it was down): retried by the sweep.
        self._unbooked: deque[tuple[str, int, tuple[str, ...]]] = deque(maxlen=100_000)
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._retry_at = 0.0  # while failing, the store is left alone until then
        self.retry_interval = check_positive(retry_interval, "retry_interval")

    # -- life cycle ----------------------------------------------------------------

    async def start(self, *, sweep: bool = False) -> None:
        """Start the sweeper (every ``sweep_interval`` s) when there are rules, or
        ``sweep`` says that calls will bring their own (a key's budget)."""
        if (self.rules or sweep) and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sweeper())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.sweep()
        await self.store.aclose()

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.sweep()
            except Exception as exc:  # noqa: BLE001 - the next sweep tries again
                self._fault(exc, "sweep")

    async def sweep(self) -> int:
        """Book what could not be booked while the store was down, and settle the
        holds past their deadline at their reserved amount."""
        while self._unbooked:
            hold, actual, keys = self._unbooked[0]
            if keys:
                await self._open_hold(hold, keys)
            await self.store.settle(hold, actual)
            self._unbooked.popleft()
        swept = await self.store.sweep(self.clock.now())
        self.stats.swept += swept
        if swept:
            log.warning("budgets: booked %d holds left unsettled past their deadline", swept)
        self._recovered()
        return swept

    # -- the call's side ---------------------------------------------------------------

    def counters(
        self, key: str, tenant: str, model: str, extra: Sequence[BudgetRule] = ()
    ) -> list[tuple[BudgetRule, str, Window]]:
        """The budgets a call of ``key``/``tenant`` on ``model`` is charged to (the
        configured rules, then ``extra`` ones, e.g. a key's own budget), with the
        value and period window of each."""
        now = self.clock.now()
        out = []
        for rule in (*extra, *self.rules) if extra else self.rules:
            value = rule.value(key, tenant, model)
            if value is None:
                continue
            win = self._windows.get(rule.period)
            if win is None or not win.start <= now < win.end:
                win = self._windows[rule.period] = window(rule.period, now)
            out.append((rule, value, win))
        return out

    def counter_key(self, rule: BudgetRule, value: str, win: Window) -> str:
        return self.counter_key_for(rule.scope, value, rule.period, win.label)

    def counter_key_for(self, scope: str, value: str, period: str, label: str) -> str:
        """The counter of the budget on ``value`` of ``scope`` in the period ``label``."""
        return f"{self._prefix}{scope}:{value}:{period}:{label}"

    def name(self, rule: BudgetRule, value: str) -> str:
        return f"{rule.scope}:{value}:{rule.period}"

    async def reserve(
        self,
        *,
        key: str,
        tenant: str,
        model: str,
        estimate: float,
        downgrade_estimate: Callable[[str], float | None] | None = None,
        extra: Sequence[BudgetRule] = (),
    ) -> BudgetHold | None:
        """Reserve ``estimate`` USD on every budget of the call; ``None`` if none
        applies. Raises :class:`BudgetExceededError` when a budget is used up or
        the estimate would cross it. ``downgrade_estimate(model)`` gives the
        estimate on the cheaper model a budget names (``None``: unknown price,
        no downgrade). ``extra`` rules apply on top of the configured ones."""
        found = self.counters(key, tenant, model, extra)
        if not found:
            return None
        down_model = next((r.downgrade_to for r, _, _ in found if r.downgrade_to), None)
        down = -1
        if down_model is not None and down_model != model and downgrade_estimate is not None:
            cheaper = downgrade_estimate(down_model)
            down = _nanos(cheaper) if cheaper is not None else -1
        counters = [
            Counter(
                self.counter_key(rule, value, win),
                _nanos(rule.limit_usd),
                rule.alert_at,
                rule.downgrade_at if rule.downgrade_to else 2.0,
                int(win.end) + _KEEP_AFTER_PERIOD,
            )
            for rule, value, win in found
        ]
        hold = f"{self._node}{next(self._ids):x}"
        now = self.clock.now()
        amount = _nanos(estimate)
        try:
            if self._failing and self.clock.monotonic() < self._retry_at:
                raise _StoreRestingError
            outcome = await self.store.reserve(
                counters,
                hold=hold,
                estimate=amount,
                downgrade=down,
                deadline=now + self.settle_after,
            )
        except Exception as exc:  # noqa: BLE001 - decided by on_error
            self._fault(exc, "reserve")
            if self.on_error == "closed":
                raise TrafficError(
                    "the budget store is unavailable and budgets fail closed", retry_after=1.0
                ) from None
            return BudgetHold(
                hold, amount, tuple(c.key for c in counters), model, False, (), booked=False
            )
        self._recovered()
        self.stats.reservations += 1
        statuses = tuple(
            BudgetStatus(
                self.name(rule, value),
                rule.limit_usd,
                outcome.spent[i] / NANOS,
                outcome.reserved[i] / NANOS,
                (outcome.spent[i] + outcome.reserved[i] + outcome.amount) / counters[i].limit,
                win.reset_iso(),
            )
            for i, (rule, value, win) in enumerate(found)
        )
        if outcome.action == REFUSED:
            self.stats.refused += 1
            status = statuses[outcome.refused_by]
            if outcome.exhausted:
                self._emit("exhausted", status, key, tenant, model)
            win = found[outcome.refused_by][2]
            used = status.spent + status.reserved
            reserved_usd = outcome.amount / NANOS
            cause = (
                "is used up"
                if used >= status.limit
                else f"would be crossed by this request's reserved cost ({usd(reserved_usd)})"
            )
            raise BudgetExceededError(
                f"budget {status.name} of {usd(status.limit)} {cause}: "
                f"{usd(status.spent)} spent, {usd(status.reserved)} reserved by calls under "
                f"way; it resets at {win.reset_iso()}",
                budget=status.name,
                limit=status.limit,
                spent=status.spent,
                reset_at=win.end,
                retry_after=max(1.0, math.ceil(win.end - now)),
            )
        downgraded = outcome.action != 0
        for i, first in enumerate(outcome.alerts):
            if first:
                self.stats.alerts += 1
                self._emit("alert", statuses[i], key, tenant, model)
        if downgraded:
            self.stats.downgraded += 1
            worst = max(statuses, key=lambda s: s.ratio)
            self._emit("downgrade", worst, key, tenant, model)
        assert down_model is not None or not downgraded
        return BudgetHold(
            hold,
            outcome.amount,
            tuple(c.key for c in counters),
            down_model if downgraded and down_model is not None else model,
            downgraded,
            statuses,
        )

    async def settle(self, hold: BudgetHold | None, cost: float | None) -> None:
        """Swap the hold's reservation for ``cost`` USD (``None``: the cost is not
        known, book the reservation). Once per hold; a store fault queues it."""
        if hold is None or hold.settled:
            return
        hold.settled = True
        actual = hold.amount if cost is None else _nanos(cost)
        try:
            if self._failing and self.clock.monotonic() < self._retry_at:
                raise _StoreRestingError
            if not hold.booked:
                # Reserved nothing (the store was down): open the hold now, unchecked,
                # so that settling books the cost.
                await self._open_hold(hold.id, hold.counters)
            await self.store.settle(hold.id, actual)
        except Exception as exc:  # noqa: BLE001 - kept and retried by the sweep
            self._fault(exc, "settle")
            if len(self._unbooked) == self._unbooked.maxlen:
                log.error(
                    "budgets: %d bookings wait for the store; the oldest is dropped",
                    len(self._unbooked),
                )
            self._unbooked.append((hold.id, actual, () if hold.booked else hold.counters))
            self.stats.queued += 1
            return
        self.stats.settled += 1

    def settle_now(self, hold: BudgetHold | None, cost: float | None) -> bool:
        """:meth:`settle` without an await when the store is in this process (no
        I/O); False, and nothing done, when it must be awaited."""
        store = self.store
        if hold is None or hold.settled:
            return True
        if not isinstance(store, LocalBudgetStore) or not hold.booked:
            return False
        hold.settled = True
        store.settle_now(hold.id, hold.amount if cost is None else _nanos(cost))
        self.stats.settled += 1
        return True

    async def _open_hold(self, hold: str, keys: tuple[str, ...]) -> None:
        """A zero hold on ``keys`` that no limit refuses (booking a call that went
        while the store was down)."""
        expire = int(self.clock.now()) + 40 * 86400
        counters = [Counter(k, 2**62, 2.0, 2.0, expire) for k in keys]
        deadline = self.clock.now() + self.settle_after
        await self.store.reserve(counters, hold=hold, estimate=0, downgrade=-1, deadline=deadline)

    async def status(
        self,
        *,
        key: str = "",
        tenant: str = "",
        model: str = "",
        extra: Sequence[BudgetRule] = (),
    ) -> list[BudgetStatus]:
        """The budgets of a call of ``key``/``tenant`` on ``model`` as they stand."""
        found = self.counters(key, tenant, model, extra)
        rows = await self.store.read([self.counter_key(r, v, w) for r, v, w in found])
        return [
            BudgetStatus(
                self.name(r, v),
                r.limit_usd,
                s / NANOS,
                res / NANOS,
                (s + res) / _nanos(r.limit_usd),
                w.reset_iso(),
            )
            for (r, v, w), (s, res) in zip(found, rows, strict=True)
        ]

    # -- events and faults -------------------------------------------------------------

    def _emit(
        self,
        kind: Literal["alert", "downgrade", "exhausted"],
        status: BudgetStatus,
        key: str,
        tenant: str,
        model: str,
    ) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(BudgetEvent(kind, status, key, tenant, model))
        except Exception:
            log.exception("budget event handler failed")

    def _fault(self, exc: BaseException, op: str) -> None:
        if isinstance(exc, _StoreRestingError):
            self.stats.skipped += 1
            return
        self.stats.store_errors += 1
        self._retry_at = self.clock.monotonic() + self.retry_interval
        if not self._failing:
            self._failing = True
            log.warning(
                "budgets: the store failed during %s (%s: %s); failing %s",
                op,
                type(exc).__name__,
                exc,
                self.on_error,
            )

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.warning("budgets: the store is available again")


def _nanos(amount: float) -> int:
    return max(0, round(amount * NANOS))


def usd(amount: float) -> str:
    """Dollars for people: cents from $1 up (``$12.50``), four significant digits
    below (``$0.20``, ``$0.004``, ``$0.0001234``)."""
    if abs(amount) >= 1 or not amount:
        return f"${amount:,.2f}"
    text = f"{amount:.4g}"
    if "e" in text:
        text = f"{amount:.10f}".rstrip("0")
    decimals = len(text.partition(".")[2])
    return f"${text}" if decimals >= 2 else f"${amount:.2f}"
