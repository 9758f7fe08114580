"""Value-level convenience methods shared by the async tiers (Redis, SQLite).

The :class:`Tier` interface speaks in :class:`Record` objects; someone using one
tier directly wants ``get``/``set`` with validated keys, TTLs and tags. This base
supplies them once, on top of ``read_many``/``write_many``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from hotpath._clock import Clock
from hotpath.cache._record import Record
from hotpath.cache._tier import Tier
from hotpath.cache._validate import check_key, check_tags, check_ttl

__all__ = ["AsyncValueTier"]


class AsyncValueTier(Tier):
    """A :class:`Tier` with async ``get``, ``get_many``, ``set`` and ``set_many``."""

    _clock: Clock

    def _note_hits(self, keys: Sequence[str]) -> None:
        """Called with the keys a ``get``/``get_many`` found (access counting hook)."""

    async def get(self, key: str | bytes, default: object = None) -> object:
        """The value stored under ``key``, or ``default``."""
        k = check_key(key)
        record = await self.read(k)
        if record is None:
            return default
        self._note_hits((k,))
        return record.value

    async def get_many(self, keys: Iterable[str | bytes], default: object = None) -> list[object]:
        """Values for ``keys`` in order, ``default`` for the absent ones."""
        ks = [check_key(k, f"keys[{i}]") for i, k in enumerate(keys)]
        records = await self.read_many(ks)
        self._note_hits([k for k, r in zip(ks, records, strict=True) if r is not None])
        return [default if r is None else r.value for r in records]

    async def set(
        self,
        key: str | bytes,
        value: object,
        ttl: float | None = None,
        tags: Iterable[str | bytes] | None = None,
    ) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (``None``: no expiry)."""
        k, seconds, tag_tuple = check_key(key), check_ttl(ttl), check_tags(tags)
        expires = None if seconds is None else self._clock.now() + seconds
        await self.write_many(((k, Record(value, expires, 0.0, tag_tuple), tag_tuple),))

    async def set_many(
        self,
        mapping: Mapping[str | bytes, object],
        ttl: float | None = None,
        tags: Iterable[str | bytes] | None = None,
    ) -> None:
        """Store every item of ``mapping`` with the same ``ttl`` and ``tags``."""
        seconds, tag_tuple = check_ttl(ttl), check_tags(tags)
        expires = None if seconds is None else self._clock.now() + seconds
        items = [
            (check_key(k, "mapping key"), Record(v, expires, 0.0, tag_tuple), tag_tuple)
            for k, v in mapping.items()
        ]
        await self.write_many(items)
