"""Where budget counters live: in the process, or in Redis for every replica.

A counter is the spend of one budget in one period, in integer nano-dollars:
``spent`` (booked) and ``reserved`` (held by calls under way). A call reserves
its estimated cost on every budget that applies, all or none, in one atomic step
that also decides its action (go, downgrade, refuse); once it is answered, the
reservation is swapped for the real cost, exactly once per call (a hold id).
A hold not settled by its deadline (the process died between the call and the
booking) is settled at its reserved amount by whichever process sweeps first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

__all__ = [
    "DOWNGRADED",
    "GO",
    "REFUSED",
    "BudgetStore",
    "Counter",
    "LocalBudgetStore",
    "Outcome",
]

GO, DOWNGRADED, REFUSED = 0, 1, 2


class Counter(NamedTuple):
    """One budget in one period, as a reservation sees it: the counter's key, its
    limit (nano-dollars), the fractions of it at which it alerts and downgrades
    (above 1: never) and when the counter may be forgotten (Unix seconds)."""

    key: str
    limit: int
    alert_at: float
    downgrade_at: float
    expire_at: int


class Outcome(NamedTuple):
    """What a reservation found and did. ``spent`` and ``reserved`` are the
    counters before it; ``refused_by`` is the refusing counter (``REFUSED``);
    ``alerts`` flags counters whose alert threshold this call was first to
    cross in the period; ``exhausted`` says this refusal was the period's first
    on that counter."""

    action: int
    refused_by: int
    spent: tuple[int, ...]
    reserved: tuple[int, ...]
    alerts: tuple[bool, ...]
    exhausted: bool
    amount: int


class BudgetStore(Protocol):
    async def reserve(
        self, counters: list[Counter], *, hold: str, estimate: int, downgrade: int, deadline: float
    ) -> Outcome: ...

    async def settle(self, hold: str, actual: int) -> bool: ...

    async def sweep(self, now: float) -> int: ...

    async def read(self, keys: list[str]) -> list[tuple[int, int]]: ...

    async def aclose(self) -> None: ...


def decide(
    counters: list[Counter], spent: list[int], reserved: list[int], estimate: int, downgrade: int
) -> tuple[int, int, int]:
    """(action, refusing index, amount): the rule both stores apply. The call
    downgrades when, at its full estimate, some counter would reach its downgrade
    fraction (and a downgrade estimate is given, ``>= 0``); it is refused when a
    counter is used up or the amount would cross it."""
    action = GO
    if downgrade >= 0:
        for i, counter in enumerate(counters):
            if spent[i] + reserved[i] + estimate >= counter.downgrade_at * counter.limit:
                action = DOWNGRADED
                break
    amount = downgrade if action == DOWNGRADED else estimate
    for i, counter in enumerate(counters):
        used = spent[i] + reserved[i]
        if used >= counter.limit or used + amount > counter.limit:
            return REFUSED, i, amount
    return action, -1, amount


@dataclass(slots=True)
class _Pending:
    amount: int
    keys: tuple[str, ...]
    deadline: float


class LocalBudgetStore:
    """Counters in this process (one gateway replica; no Redis)."""

    def __init__(self) -> None:
        self._spent: dict[str, int] = {}
        self._reserved: dict[str, int] = {}
        self._expire: dict[str, int] = {}
        self._marks: set[str] = set()
        self._pending: dict[str, _Pending] = {}

    def seed(self, key: str, spent: int, expire_at: int) -> None:
        """Start ``key`` at ``spent`` (what the usage ledger booked before a restart)."""
        self._spent[key] = spent
        self._expire[key] = expire_at

    async def reserve(
        self, counters: list[Counter], *, hold: str, estimate: int, downgrade: int, deadline: float
    ) -> Outcome:
        keys = [c.key for c in counters]
        spent = [self._spent.get(k, 0) for k in keys]
        reserved = [self._reserved.get(k, 0) for k in keys]
        action, index, amount = decide(counters, spent, reserved, estimate, downgrade)
        if action == REFUSED:
            mark = keys[index] + ":x"
            first = mark not in self._marks
            self._marks.add(mark)
            return Outcome(action, index, tuple(spent), tuple(reserved), (), first, amount)
        alerts = []
        for i, counter in enumerate(counters):
            key = counter.key
            self._reserved[key] = reserved[i] + amount
            self._expire[key] = counter.expire_at
            mark = key + ":a"
            crossed = spent[i] + reserved[i] + amount >= counter.alert_at * counter.limit
            alerts.append(crossed and mark not in self._marks)
            if crossed:
                self._marks.add(mark)
        self._pending[hold] = _Pending(amount, tuple(keys), deadline)
        return Outcome(action, -1, tuple(spent), tuple(reserved), tuple(alerts), False, amount)

    async def settle(self, hold: str, actual: int) -> bool:
        return self.settle_now(hold, actual)

    def settle_now(self, hold: str, actual: int) -> bool:
        """:meth:`settle` without the await (it does no I/O)."""
        pending = self._pending.pop(hold, None)
        if pending is None:
            return False
        for key in pending.keys:
            self._reserved[key] = self._reserved.get(key, 0) - pending.amount
            self._spent[key] = self._spent.get(key, 0) + actual
        return True

    async def sweep(self, now: float) -> int:
        late = [h for h, p in self._pending.items() if p.deadline <= now]
        for hold in late:
            self.settle_now(hold, self._pending[hold].amount)
        for key in [k for k, at in self._expire.items() if at <= now]:
            for table in (self._spent, self._reserved, self._expire):
                table.pop(key, None)
            self._marks.discard(key + ":a")
            self._marks.discard(key + ":x")
        return len(late)

    async def read(self, keys: list[str]) -> list[tuple[int, int]]:
        return [(self._spent.get(k, 0), self._reserved.get(k, 0)) for k in keys]

    async def aclose(self) -> None:
        return None
