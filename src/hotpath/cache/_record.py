"""The unit every tier stores: a value with its expiry and its recompute cost."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Record"]


@dataclass(frozen=True, slots=True)
class Record:
    """A cached value as the tiers see it.

    ``expires_at`` is wall-clock epoch seconds (``None``: never expires), so a
    record promoted from a lower tier keeps its remaining lifetime. ``delta`` is
    how long the loader took to produce the value, in seconds; early refresh
    (XFetch) uses it to decide how soon before expiry to reload. ``tags`` travel
    with the record so that a promotion to an upper tier keeps the entry
    reachable by :meth:`~hotpath.cache.TieredCache.invalidate_tags`.
    """

    value: object
    expires_at: float | None = None
    delta: float = 0.0
    tags: tuple[str, ...] = ()

    def ttl(self, now: float) -> float | None:
        """Seconds left to live at ``now`` (``None`` if it never expires; may be <= 0)."""
        return None if self.expires_at is None else self.expires_at - now

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now
