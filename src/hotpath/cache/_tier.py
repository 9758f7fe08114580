"""The one small interface every cache tier implements.

A tier stores :class:`~hotpath.cache.Record` objects under ``str`` keys. All
methods are batched (a single key is a batch of one), so a network tier can turn
them into one round trip. A tier never raises a backend fault to its caller: it
logs it, counts it in ``stats().errors``, marks itself unhealthy and answers as
if the key were absent, retrying the backend after a backoff.

The tiered cache talks to tiers only through this interface; each backend lives
in its own module (``_memory``, ``_redis``, ``_sqlite``) and is chosen by URL
(see :func:`hotpath.cache.tier_from_url`).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import ClassVar

from hotpath.cache._record import Record
from hotpath.cache._stats import TierStats

__all__ = ["Tier", "WriteItem"]

#: ``(key, record, tags)`` as passed to :meth:`Tier.write_many`.
WriteItem = tuple[str, Record, tuple[str, ...]]


class Tier(abc.ABC):
    """A cache tier: memory (L1), Redis (L2) or SQLite (L3)."""

    #: Short name used in stats and logs: ``"memory"``, ``"redis"``, ``"sqlite"``.
    name: ClassVar[str]

    @abc.abstractmethod
    async def read_many(self, keys: Sequence[str]) -> list[Record | None]:
        """Records for ``keys`` in order; ``None`` for absent or expired ones."""

    @abc.abstractmethod
    async def write_many(self, items: Sequence[WriteItem], *, only_missing: bool = False) -> None:
        """Store records (replacing existing ones) and index them under their tags.

        A record whose ``expires_at`` has already passed is not stored (and, unless
        ``only_missing``, removes an older entry). With ``only_missing`` a record is
        stored only where the key holds no live entry: a promotion from a lower
        tier must never overwrite a newer write that reached this tier meanwhile.
        A value that cannot be encoded raises :class:`~hotpath.CodecError` before
        anything of the batch is written.
        """

    @abc.abstractmethod
    async def remove_many(self, keys: Sequence[str]) -> None:
        """Remove ``keys`` (absent keys are ignored)."""

    @abc.abstractmethod
    async def remove_tags(self, tags: Sequence[str]) -> None:
        """Remove every entry stored with any of ``tags``."""

    @abc.abstractmethod
    async def clear(self) -> None:
        """Remove every entry this tier owns (only its own namespace in a shared backend)."""

    @abc.abstractmethod
    async def add_hits(self, counts: Mapping[str, int]) -> None:
        """Add access counts (for warming); counts persist with the tier's data."""

    @abc.abstractmethod
    async def hottest(self, n: int) -> list[str]:
        """Up to ``n`` live keys with the highest access counts, hottest first."""

    @abc.abstractmethod
    def stats(self) -> TierStats:
        """A snapshot of this tier's counters."""

    @property
    @abc.abstractmethod
    def healthy(self) -> bool:
        """False while a backend fault has this tier bypassed."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release connections and files. The tier is unusable afterwards."""

    async def read(self, key: str) -> Record | None:
        return (await self.read_many((key,)))[0]

    async def write(self, key: str, record: Record, tags: tuple[str, ...] = ()) -> None:
        await self.write_many(((key, record, tags),))
