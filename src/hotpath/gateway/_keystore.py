"""Gateway keys made at run time: the record of one key, and where records are kept.

A :class:`KeyRecord` holds a key's name, tenant, limits and the SHA-256 of its
secret; the secret itself is shown once, when the key is made, and never stored.
A :class:`KeyStore` keeps the records where every gateway replica can read them:

* :class:`SqliteKeyStore` (``sqlite:///path``): one file that the processes of one
  host share. Tables ``gateway_keys(name PRIMARY KEY, sha256 UNIQUE, record)`` and
  ``gateway_keys_meta(version)``, so the file may also be the cache tier's. Calls
  run on a thread of the store's own, one connection, WAL; a write waits up to
  ``busy_timeout`` for another process's write lock.
* :class:`RedisKeyStore` (``redis://``, ``rediss://``, ``unix://``): the hash
  ``{prefix}keys`` (name -> record JSON), the hash ``{prefix}keys:sha256``
  (sha256 -> name, which keeps digests unique) and the counter
  ``{prefix}keys:version``. Each write is one Lua script, so the record, the index
  and the counter change together.

Both bump a version on every write in the same transaction as the write, so a
reader learns that something changed from one cheap read (:meth:`KeyStore.version`)
and reloads only then (:class:`~hotpath.gateway._key_directory.KeyDirectory`).
A record is never deleted: a revoked key keeps its name, so names are not reused.
Faults of the backend (cannot open the file, Redis down or slow) raise
:class:`KeyStoreError`, the backend's error chained.
"""

from __future__ import annotations

import json
import logging
import math
import re
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, get_args
from urllib.parse import urlsplit

from hotpath._errors import ConfigError, HotpathError, short_repr
from hotpath.cache._redis_url import SCHEMES, redact, split_url
from hotpath.gateway._config import hash_key

if TYPE_CHECKING:
    pass

__all__ = [
    "KeyExistsError",
    "KeyRecord",
    "KeyStore",
    "KeyStoreError",
    "Period",
    "decode_records",
    "key_record",
    "new_key_secret",
    "open_key_store",
    "revoked_record",
]

log = logging.getLogger("hotpath.gateway")

T = TypeVar("T")

Period = Literal["day", "week", "month"]
_PERIODS: tuple[str, ...] = get_args(Period)
_NAME = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
_HEX = frozenset("0123456789abcdef")


class KeyExistsError(HotpathError):
    """A key of that name (or with that secret) is already stored; revoked keys included."""


class KeyStoreError(HotpathError):
    """The key store could not be read or written (file, Redis); the cause is chained."""


# -- records ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRecord:
    """One gateway key. Invalid fields raise :class:`ConfigError` naming the field.

    ``rpm``/``tpm`` are this key's request and token limits per minute, ``budget_usd``
    its spend limit per ``budget_period``; ``None`` means no limit of that kind.
    """

    name: str
    tenant: str
    sha256: str = field(repr=False)
    created_at: float
    revoked_at: float | None = None
    rpm: int | None = None
    tpm: int | None = None
    budget_usd: float | None = None
    budget_period: Period = "month"

    def __post_init__(self) -> None:
        name = self.name
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError(
                f"name must be 1-128 characters from A-Z a-z 0-9 . _ : @ -, got {short_repr(name)}"
            )
        if not isinstance(self.tenant, str) or not self.tenant:
            raise ConfigError(f"tenant must be a non-empty string, got {short_repr(self.tenant)}")
        digest = self.sha256
        if not isinstance(digest, str) or len(digest) != 64 or not _HEX.issuperset(digest):
            # The value is not shown: a secret passed here by mistake must not reach a log.
            got = (
                f"a str of {len(digest)} chars"
                if isinstance(digest, str)
                else type(digest).__name__
            )
            raise ConfigError(f"sha256 of key {name!r} must be 64 lowercase hex digits, got {got}")
        _check_time(self.created_at, "created_at")
        if self.revoked_at is not None:
            _check_time(self.revoked_at, "revoked_at")
        _check_limit(self.rpm, "rpm")
        _check_limit(self.tpm, "tpm")
        budget = self.budget_usd
        if budget is not None and (
            isinstance(budget, bool)
            or not isinstance(budget, int | float)
            or not math.isfinite(budget)
            or budget <= 0
        ):
            raise ConfigError(f"budget_usd must be a number > 0 or None, got {short_repr(budget)}")
        if self.budget_period not in _PERIODS:
            raise ConfigError(
                f"budget_period must be one of {', '.join(_PERIODS)}, "
                f"got {short_repr(self.budget_period)}"
            )

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def public(self) -> dict[str, Any]:
        """The record as JSON-ready data, for the admin API: everything but the digest."""
        out = asdict(self)
        del out["sha256"]
        out["revoked"] = self.revoked
        return out

    def to_json(self) -> bytes:
        """The stored form (the digest included)."""
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> KeyRecord:
        """A record from :meth:`to_json`'s output; fields it does not know are ignored
        (a newer writer may add some). A bad document raises :class:`ConfigError`."""
        try:
            doc = json.loads(data)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"key record is not JSON ({exc}): {short_repr(data)}") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"key record must be a JSON object, got {short_repr(doc)}")
        known = {k: v for k, v in doc.items() if k in _FIELDS}
        missing = _REQUIRED - known.keys()
        if missing:
            raise ConfigError(
                f"key record {short_repr(doc.get('name'))} lacks {', '.join(sorted(missing))}"
            )
        return cls(**known)


_FIELDS = frozenset(KeyRecord.__dataclass_fields__)
_REQUIRED = frozenset({"name", "tenant", "sha256", "created_at"})


def _check_time(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number of seconds, got {short_repr(value)}")


def _check_limit(value: object, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{name} must be an int >= 1 or None, got {short_repr(value)}")


def new_key_secret() -> str:
    """A fresh client key: ``hp-`` and 43 URL-safe characters (256 random bits)."""
    return "hp-" + secrets.token_urlsafe(32)


def key_record(
    *,
    name: str,
    tenant: str,
    secret: str,
    created_at: float,
    rpm: int | None = None,
    tpm: int | None = None,
    budget_usd: float | None = None,
    budget_period: Period = "month",
) -> KeyRecord:
    """A validated record of a new key whose client secret is ``secret`` (only its
    SHA-256 is kept)."""
    if not isinstance(secret, str) or not secret:
        raise ConfigError("secret must be a non-empty string")
    return KeyRecord(
        name=name,
        tenant=tenant,
        sha256=hash_key(secret),
        created_at=created_at,
        rpm=rpm,
        tpm=tpm,
        budget_usd=budget_usd,
        budget_period=budget_period,
    )


def decode_records(rows: Iterable[tuple[str, bytes | str]], where: str) -> list[KeyRecord]:
    """Records from stored ``(name, json)`` rows, oldest first. An unreadable one is
    logged and left out: its key stops working, every other key goes on working."""
    out = []
    for name, data in rows:
        try:
            out.append(KeyRecord.from_json(data))
        except ConfigError as exc:
            log.error("gateway key %r in %s is unreadable, ignored: %s", name, where, exc)
    out.sort(key=lambda r: (r.created_at, r.name))
    return out


def revoked_record(record: KeyRecord, at: float) -> KeyRecord:
    _check_time(at, "at")
    return KeyRecord(**{**asdict(record), "revoked_at": at})


# -- the interface ------------------------------------------------------------------------


class KeyStore(Protocol):
    """Where gateway key records are kept (see the module docstring)."""

    @property
    def url(self) -> str:
        """The store's URL, any password hidden."""
        ...

    async def open(self) -> None:
        """Connect (or create the file and its tables). Other calls open on first use too."""
        ...

    async def create(self, record: KeyRecord) -> None:
        """Store a new key; :class:`KeyExistsError` if its name (or digest) is taken."""
        ...

    async def all(self) -> list[KeyRecord]:
        """Every record, revoked ones included, oldest first."""
        ...

    async def revoke(self, name: str, *, at: float) -> KeyRecord | None:
        """Mark key ``name`` revoked at ``at``; the record as stored after the call, or
        None if there is no such key. A revoked key keeps its first ``revoked_at``."""
        ...

    async def version(self) -> int:
        """A number that changes on every create and revoke (one cheap read)."""
        ...

    async def aclose(self) -> None: ...


def open_key_store(url: str, *, prefix: str = "hp:") -> KeyStore:
    """The store a URL names: ``sqlite:///relative.db``, ``sqlite:////abs.db``
    (optional ``?busy_timeout=`` seconds), or ``redis://``, ``rediss://``,
    ``unix://`` (optional ``prefix``, ``timeout`` and ``connect_timeout``
    parameters; a ``prefix`` in the URL wins over the argument). Nothing connects
    until the store is used."""
    if not isinstance(url, str):
        raise ConfigError(f"key store URL must be a str, got {type(url).__name__} {url!r}")
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        from hotpath.gateway._keystore_sqlite import SqliteKeyStore

        return SqliteKeyStore.from_url(url)
    if scheme in SCHEMES:
        from hotpath.gateway._keystore_redis import RedisKeyStore

        conn_url, options = split_url(url)
        options.pop("max_connections", None)
        options.setdefault("prefix", prefix)
        return RedisKeyStore(conn_url, **options)
    raise ConfigError(
        f"key store URL must start with sqlite:///, redis://, rediss:// or unix://, "
        f"got {redact(url)!r}"
    )
