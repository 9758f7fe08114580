"""Budget periods: a UTC day, an ISO week (from Monday) or a calendar month."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal, NamedTuple

__all__ = ["PERIODS", "Period", "Window", "window"]

Period = Literal["day", "week", "month"]
PERIODS: tuple[Period, ...] = ("day", "week", "month")


class Window(NamedTuple):
    """One period: its first and first-after instants (Unix seconds), its label
    (``2026-12-02``, ``2026-W49``, ``2026-12``), which names its counters, and
    when it ends as ``YYYY-MM-DDTHH:MM:SSZ``."""

    start: float
    end: float
    label: str
    reset: str

    def reset_iso(self) -> str:
        """When the period ends, ``YYYY-MM-DDTHH:MM:SSZ``."""
        return self.reset


def _window(start: datetime, end: datetime, label: str) -> Window:
    return Window(start.timestamp(), end.timestamp(), label, f"{end:%Y-%m-%dT%H:%M:%SZ}")


def window(period: Period, now: float) -> Window:
    """The period of kind ``period`` that holds the instant ``now``."""
    moment = datetime.fromtimestamp(now, UTC)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return _window(day, day + timedelta(days=1), f"{day:%Y-%m-%d}")
    if period == "week":
        start = day - timedelta(days=day.weekday())
        year, week, _ = start.isocalendar()
        return _window(start, start + timedelta(days=7), f"{year}-W{week:02d}")
    if period == "month":
        start = day.replace(day=1)
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else (start.replace(month=start.month + 1))
        )
        return _window(start, end, f"{start:%Y-%m}")
    raise ValueError(f"period must be one of {PERIODS}, got {period!r}")
