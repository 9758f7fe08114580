"""The ledger's rows: their dimensions and counters, a report's :class:`SpendRow`,
and the checks of what callers pass in."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from hotpath._errors import ConfigError, short_repr

__all__ = [
    "COL_CACHED",
    "COL_COALESCED",
    "COL_COMPLETION",
    "COL_COST",
    "COL_ERRORS",
    "COL_ESTIMATED",
    "COL_HITS",
    "COL_PROMPT",
    "COL_REQUESTS",
    "COL_SAVED",
    "COL_SAVED_MS",
    "COL_SAVED_UNKNOWN",
    "COL_UNKNOWN",
    "COUNTERS",
    "DIMENSIONS",
    "RowKey",
    "SpendRow",
    "check_by",
    "check_day",
    "check_where",
    "dimension",
    "spend_row",
    "to_nanos",
    "total_row",
]

DIMENSIONS: Final = ("day", "key", "tenant", "model", "deployment")
COUNTERS: Final = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_nanos",
    "unknown_cost",
    "estimated",
    "errors",
    "cache_hits",
    "coalesced",
    "saved_nanos",
    "saved_unknown",
    "saved_latency_ms",
)

#: One row of the ledger: ``(day, key, tenant, model, deployment)``.
RowKey = tuple[str, str, str, str, str]

(
    COL_REQUESTS,
    COL_PROMPT,
    COL_COMPLETION,
    COL_CACHED,
    COL_COST,
    COL_UNKNOWN,
    COL_ESTIMATED,
    COL_ERRORS,
    COL_HITS,
    COL_COALESCED,
    COL_SAVED,
    COL_SAVED_UNKNOWN,
    COL_SAVED_MS,
) = range(len(COUNTERS))

_SEP: Final = "\x1f"  # the Redis store's field separator; never inside a dimension value
_DAY_RE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_NANOS: Final = 1e9


@dataclass(frozen=True, slots=True)
class SpendRow:
    """One group of a :meth:`Ledger.report`.

    ``requests`` counts upstream calls (``Ledger.record``); cache hits and
    coalesced calls are counted apart, with what they saved. ``unknown_cost``
    counts calls whose model had no price: their cost is left out, not guessed
    (likewise ``saved_unknown``). ``estimated`` counts calls whose tokens were
    counted locally because the upstream reported no usage.
    """

    group: dict[str, str]
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_usd: float
    unknown_cost: int
    estimated: int
    errors: int
    cache_hits: int
    coalesced: int
    saved_usd: float
    saved_unknown: int
    saved_latency_s: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``group`` (a dict) and every count."""
        return {
            "group": dict(self.group),
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "cost_usd": self.cost_usd,
            "unknown_cost": self.unknown_cost,
            "estimated": self.estimated,
            "errors": self.errors,
            "cache_hits": self.cache_hits,
            "coalesced": self.coalesced,
            "saved_usd": self.saved_usd,
            "saved_unknown": self.saved_unknown,
            "saved_latency_s": self.saved_latency_s,
        }


def spend_row(group: dict[str, str], c: Sequence[int]) -> SpendRow:
    return SpendRow(
        group=group,
        requests=c[COL_REQUESTS],
        prompt_tokens=c[COL_PROMPT],
        completion_tokens=c[COL_COMPLETION],
        cached_tokens=c[COL_CACHED],
        cost_usd=c[COL_COST] / _NANOS,
        unknown_cost=c[COL_UNKNOWN],
        estimated=c[COL_ESTIMATED],
        errors=c[COL_ERRORS],
        cache_hits=c[COL_HITS],
        coalesced=c[COL_COALESCED],
        saved_usd=c[COL_SAVED] / _NANOS,
        saved_unknown=c[COL_SAVED_UNKNOWN],
        saved_latency_s=c[COL_SAVED_MS] / 1000,
    )


def total_row(rows: Sequence[SpendRow]) -> SpendRow:
    """The sum of ``rows`` (group ``{}``). Amounts are summed as nano-dollars and
    milliseconds, as stored, so the total is exact."""
    c = [0] * len(COUNTERS)
    for r in rows:
        c[COL_REQUESTS] += r.requests
        c[COL_PROMPT] += r.prompt_tokens
        c[COL_COMPLETION] += r.completion_tokens
        c[COL_CACHED] += r.cached_tokens
        c[COL_COST] += round(r.cost_usd * _NANOS)
        c[COL_UNKNOWN] += r.unknown_cost
        c[COL_ESTIMATED] += r.estimated
        c[COL_ERRORS] += r.errors
        c[COL_HITS] += r.cache_hits
        c[COL_COALESCED] += r.coalesced
        c[COL_SAVED] += round(r.saved_usd * _NANOS)
        c[COL_SAVED_UNKNOWN] += r.saved_unknown
        c[COL_SAVED_MS] += round(r.saved_latency_s * 1000)
    return spend_row({}, c)


def to_nanos(cost: object, name: str) -> int | None:
    if cost is None:
        return None
    if isinstance(cost, bool) or not isinstance(cost, int | float) or not math.isfinite(cost):
        raise ConfigError(f"{name} must be a number of USD >= 0 or None, got {short_repr(cost)}")
    if cost < 0:
        raise ConfigError(f"{name} must be >= 0, got {cost!r}")
    return round(cost * _NANOS)


def dimension(value: object, name: str) -> str:
    """``value`` as a str any store can hold: no "\\x1f", valid UTF-8."""
    if type(value) is not str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a str, got {type(value).__name__} {value!r}")
        value = str(value)
    if _SEP in value:
        value = value.replace(_SEP, " ")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: no store would take them
            value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def check_by(by: object) -> tuple[str, ...]:
    names = (by,) if isinstance(by, str) else by
    if not isinstance(names, Sequence):
        raise ConfigError(
            f"by must be a sequence of dimensions ({', '.join(DIMENSIONS)}), got {short_repr(by)}"
        )
    out: list[str] = []
    for name in names:
        if name not in DIMENSIONS:
            raise ConfigError(
                f"by: unknown dimension {short_repr(name)}; known: {', '.join(DIMENSIONS)}"
            )
        if name in out:
            raise ConfigError(f"by: dimension {name!r} given twice in {short_repr(by)}")
        out.append(name)
    return tuple(out)


def check_day(value: object, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and _DAY_RE.match(value):
        with contextlib.suppress(ValueError):
            return dt.date.fromisoformat(value).isoformat()
    raise ConfigError(f"{name} must be a date YYYY-MM-DD (UTC) or None, got {short_repr(value)}")


def check_where(where: object) -> list[tuple[int, str]]:
    if where is None:
        return []
    if not isinstance(where, Mapping):
        raise ConfigError(f"where must be a mapping of dimension to value, got {short_repr(where)}")
    out: list[tuple[int, str]] = []
    for name, value in where.items():
        if name not in DIMENSIONS:
            raise ConfigError(
                f"where: unknown dimension {short_repr(name)}; known: {', '.join(DIMENSIONS)}"
            )
        if not isinstance(value, str):
            raise ConfigError(f"where[{name!r}] must be a str, got {short_repr(value)}")
        if name == "day":
            check_day(value, "where['day']")
        out.append((DIMENSIONS.index(name), dimension(value, f"where[{name!r}]")))
    return out
