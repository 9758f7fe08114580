"""A spend report as text: one line per group, then the total (what
``hotpath spend`` prints and ``GET /admin/spend?format=table`` answers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hotpath.cost._ledger_rows import SpendRow, total_row

__all__ = ["spend_document", "spend_table"]

_COLUMNS = (
    ("requests", ">"),
    ("prompt", ">"),
    ("completion", ">"),
    ("cached", ">"),
    ("cost $", ">"),
    ("unpriced", ">"),
    ("hits", ">"),
    ("coalesced", ">"),
    ("saved $", ">"),
    ("saved time", ">"),
)


def _cells(row: SpendRow) -> list[str]:
    return [
        f"{row.requests:,}",
        f"{row.prompt_tokens:,}",
        f"{row.completion_tokens:,}",
        f"{row.cached_tokens:,}",
        f"{row.cost_usd:,.4f}",
        f"{row.unknown_cost:,}",
        f"{row.cache_hits:,}",
        f"{row.coalesced:,}",
        f"{row.saved_usd:,.4f}",
        _duration(row.saved_latency_s),
    ]


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def spend_table(rows: Sequence[SpendRow], by: Sequence[str]) -> str:
    """``rows`` (grouped by ``by``) and their total as an aligned text table."""
    header = [*by, *(name for name, _ in _COLUMNS)]
    body = [[*(row.group.get(d, "") or "-" for d in by), *_cells(row)] for row in rows]
    total = (
        ["total", *([""] * (len(by) - 1)), *_cells(total_row(rows))]
        if by
        else _cells(total_row(rows))
    )
    lines = [header, *body, total]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    align = ["<"] * len(by) + [a for _, a in _COLUMNS]

    def render(line: list[str]) -> str:
        return "  ".join(f"{cell:{a}{w}}" for cell, a, w in zip(line, align, widths, strict=True))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(header), rule, *map(render, body), rule, render(total)]) + "\n"


def spend_document(
    rows: Sequence[SpendRow],
    *,
    by: Sequence[str],
    since: str | None,
    until: str | None,
    where: Mapping[str, str],
    prices_date: str,
) -> dict[str, Any]:
    """The JSON-ready spend report (``GET /admin/spend`` and ``hotpath spend --json``):
    ``by``, ``since``, ``until``, ``where``, ``prices_date``, ``data`` (one dict per
    row of ``rows``) and ``total``."""
    return {
        "by": list(by),
        "since": since,
        "until": until,
        "where": dict(where),
        "prices_date": prices_date,
        "data": [r.to_dict() for r in rows],
        "total": total_row(rows).to_dict(),
    }
