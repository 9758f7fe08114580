"""Cost: what calls use and cost, budgets that stop a runaway agent, and what
the cache saved.

Prices come from a table shipped with the package (:meth:`PriceTable.default`,
overridable); usage is booked by key, tenant, model, deployment and day in a
:class:`Ledger`; :class:`Budgets` reserve a call's estimated cost before it goes
and book its real cost after, in the process or in Redis for every replica.
"""

from hotpath._errors import BudgetExceededError
from hotpath.cost._budget import BudgetEvent, BudgetHold, BudgetRule, Budgets, BudgetStatus
from hotpath.cost._budget_redis import RedisBudgetStore
from hotpath.cost._budget_store import BudgetStore, LocalBudgetStore
from hotpath.cost._ledger import Ledger, LedgerStats, LedgerStore, open_ledger_store
from hotpath.cost._ledger_rows import COUNTERS, DIMENSIONS, SpendRow, total_row
from hotpath.cost._ledger_stores import MemoryLedgerStore, RedisLedgerStore, SqliteLedgerStore
from hotpath.cost._periods import Period, Window, window
from hotpath.cost._prices import Price, PriceTable
from hotpath.cost._report import spend_table
from hotpath.cost._select import Candidate, Choice, ModelSelector, Weights
from hotpath.cost._usage import Usage

__all__ = [  # noqa: RUF022 - sorted plainly, as the other packages
    "BudgetEvent",
    "BudgetExceededError",
    "BudgetHold",
    "BudgetRule",
    "BudgetStatus",
    "BudgetStore",
    "Budgets",
    "COUNTERS",
    "Candidate",
    "Choice",
    "DIMENSIONS",
    "Ledger",
    "LedgerStats",
    "LedgerStore",
    "LocalBudgetStore",
    "MemoryLedgerStore",
    "ModelSelector",
    "Period",
    "Price",
    "PriceTable",
    "RedisBudgetStore",
    "RedisLedgerStore",
    "SpendRow",
    "SqliteLedgerStore",
    "Usage",
    "Weights",
    "Window",
    "open_ledger_store",
    "spend_table",
    "total_row",
    "window",
]
