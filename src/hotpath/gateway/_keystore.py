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

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import math
import re
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, get_args
from urllib.parse import unquote, urlsplit

from hotpath._errors import ConfigError, HotpathError, short_repr
from hotpath._options import check_positive
from hotpath.cache._redis_url import SCHEMES, redact, split_url
from hotpath.cache._urls import parse_float, parse_options
from hotpath.gateway._config import hash_key

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "KeyExistsError",
    "KeyRecord",
    "KeyStore",
    "KeyStoreError",
    "Period",
    "RedisKeyStore",
    "SqliteKeyStore",
    "key_record",
    "new_key_secret",
    "open_key_store",
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


def _decode_all(rows: Iterable[tuple[str, bytes | str]], where: str) -> list[KeyRecord]:
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


def _revoked(record: KeyRecord, at: float) -> KeyRecord:
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
        return SqliteKeyStore.from_url(url)
    if scheme in SCHEMES:
        conn_url, options = split_url(url)
        options.pop("max_connections", None)
        options.setdefault("prefix", prefix)
        return RedisKeyStore(conn_url, **options)
    raise ConfigError(
        f"key store URL must start with sqlite:///, redis://, rediss:// or unix://, "
        f"got {redact(url)!r}"
    )


# -- SQLite -------------------------------------------------------------------------------

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS gateway_keys (
        name   TEXT PRIMARY KEY,
        sha256 TEXT NOT NULL UNIQUE,
        record TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS gateway_keys_meta (
        id      INTEGER PRIMARY KEY CHECK (id = 1),
        version INTEGER NOT NULL)""",
    "INSERT OR IGNORE INTO gateway_keys_meta(id, version) VALUES (1, 0)",
)
_BUMP = "UPDATE gateway_keys_meta SET version = version + 1 WHERE id = 1"


class SqliteKeyStore:
    """Key records in one SQLite file (see the module docstring).

    ``busy_timeout`` bounds how long a write waits for another process's write lock.
    Reads never wait for writers (WAL).
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        if not isinstance(path, str | Path) or not str(path) or str(path) == ":memory:":
            raise ConfigError(f"path must name a database file, got {short_repr(path)}")
        self.path = Path(path)
        self.busy_timeout = check_positive(busy_timeout, "busy_timeout")
        self._conn: sqlite3.Connection | None = None
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None

    @classmethod
    def from_url(cls, url: str) -> SqliteKeyStore:
        """``sqlite:///relative/keys.db`` or ``sqlite:////absolute/keys.db``."""
        parts = urlsplit(url)
        if parts.scheme.lower() != "sqlite" or parts.netloc or len(parts.path) < 2:
            raise ConfigError(
                f"key store URL must be sqlite:///relative.db or sqlite:////abs.db, got {url!r}"
            )
        options = parse_options(url, {"busy_timeout": parse_float})
        return cls(unquote(parts.path[1:]), **options)

    def __repr__(self) -> str:
        return f"SqliteKeyStore({str(self.path)!r}, busy_timeout={self.busy_timeout!r})"

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    async def open(self) -> None:
        await self._run("open", lambda conn: None)

    async def create(self, record: KeyRecord) -> None:
        def create(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                if conn.execute(
                    "SELECT 1 FROM gateway_keys WHERE name = ?", (record.name,)
                ).fetchone():
                    raise KeyExistsError(f"a key named {record.name!r} already exists")
                try:
                    conn.execute(
                        "INSERT INTO gateway_keys(name, sha256, record) VALUES (?, ?, ?)",
                        (record.name, record.sha256, record.to_json().decode()),
                    )
                except sqlite3.IntegrityError:
                    raise KeyExistsError(
                        f"key {record.name!r}: a key with the same secret already exists"
                    ) from None
                conn.execute(_BUMP)

        await self._run("create", create)

    async def all(self) -> list[KeyRecord]:
        rows = await self._run(
            "all", lambda conn: conn.execute("SELECT name, record FROM gateway_keys").fetchall()
        )
        return _decode_all(rows, self.url)

    async def revoke(self, name: str, *, at: float) -> KeyRecord | None:
        def revoke(conn: sqlite3.Connection) -> KeyRecord | None:
            with _transaction(conn):
                row = conn.execute(
                    "SELECT record FROM gateway_keys WHERE name = ?", (name,)
                ).fetchone()
                if row is None:
                    return None
                record = KeyRecord.from_json(row[0])
                if record.revoked:
                    return record
                record = _revoked(record, at)
                conn.execute(
                    "UPDATE gateway_keys SET record = ? WHERE name = ?",
                    (record.to_json().decode(), name),
                )
                conn.execute(_BUMP)
                return record

        return await self._run("revoke", revoke)

    async def version(self) -> int:
        row = await self._run(
            "version",
            lambda conn: conn.execute(
                "SELECT version FROM gateway_keys_meta WHERE id = 1"
            ).fetchone(),
        )
        return int(row[0])

    async def aclose(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        with contextlib.suppress(sqlite3.Error, RuntimeError):
            await asyncio.get_running_loop().run_in_executor(thread, self._close)
        thread.shutdown(wait=False)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def _run(self, op: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` on the store's thread; backend faults as KeyStoreError."""
        if self._thread is None:
            self._thread = concurrent.futures.ThreadPoolExecutor(1, "hotpath-keystore")
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._thread, lambda: fn(self._connection())
            )
        except (sqlite3.Error, OSError) as exc:
            if not isinstance(exc, sqlite3.OperationalError) or "locked" not in str(exc):
                # Reconnect on the next call: the file may have been replaced or repaired.
                await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
            raise KeyStoreError(f"key store {self.url}: {op} failed: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        """The store thread's connection, opened (and the schema made) on first use."""
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
            try:
                if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                    conn.execute("PRAGMA journal_mode = WAL").fetchone()
                conn.execute("PRAGMA synchronous = NORMAL")
                with _transaction(conn):
                    for statement in _SCHEMA:
                        conn.execute(statement)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE``: take the write lock before reading what the write depends on."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


# -- Redis --------------------------------------------------------------------------------

# KEYS: records, sha256 index, version. ARGV: name, sha256, record.
# 0: name taken, -1: digest taken, else the new version.
_CREATE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return redis.call('INCR', KEYS[3])
"""
# Compare and set. KEYS: records, version. ARGV: name, record read, new record.
_REPLACE = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return redis.call('INCR', KEYS[2])
"""


class RedisKeyStore:
    """Key records in Redis (see the module docstring).

    ``timeout`` bounds each command, ``connect_timeout`` each connection attempt.
    The client is made on first use and belongs to the event loop that made it.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "hp:",
        timeout: float = 1.0,
        connect_timeout: float = 1.0,
    ) -> None:
        if not isinstance(url, str) or urlsplit(url).scheme.lower() not in SCHEMES:
            raise ConfigError(
                "url must start with redis://, rediss:// or unix://, "
                f"got {short_repr(redact(url) if isinstance(url, str) else url)}"
            )
        if not isinstance(prefix, str) or not prefix:
            raise ConfigError(f"prefix must be a non-empty string, got {short_repr(prefix)}")
        self._url = url
        self._shown = redact(url)
        self.prefix = prefix
        self.timeout = check_positive(timeout, "timeout")
        self.connect_timeout = check_positive(connect_timeout, "connect_timeout")
        self._keys = f"{prefix}keys"
        self._index = f"{prefix}keys:sha256"
        self._version = f"{prefix}keys:version"
        self._client: Redis | None = None

    def __repr__(self) -> str:
        return (
            f"RedisKeyStore({self._shown!r}, prefix={self.prefix!r}, timeout={self.timeout!r}, "
            f"connect_timeout={self.connect_timeout!r})"
        )

    @property
    def url(self) -> str:
        return self._shown

    async def open(self) -> None:
        await self._call("open", lambda c: c.ping())

    async def create(self, record: KeyRecord) -> None:
        keys = (self._keys, self._index, self._version)
        args = (record.name, record.sha256, record.to_json())
        done = await self._call("create", partial(_eval, script=_CREATE, keys=keys, args=args))
        if done == 0:
            raise KeyExistsError(f"a key named {record.name!r} already exists")
        if done == -1:
            raise KeyExistsError(f"key {record.name!r}: a key with the same secret already exists")

    async def all(self) -> list[KeyRecord]:
        rows: dict[bytes, bytes] = await self._call("all", lambda c: c.hgetall(self._keys))
        return _decode_all(((k.decode(errors="replace"), v) for k, v in rows.items()), self.url)

    async def revoke(self, name: str, *, at: float) -> KeyRecord | None:
        while True:
            data = await self._call("revoke", lambda c: c.hget(self._keys, name))
            if data is None:
                return None
            record = KeyRecord.from_json(data)
            if record.revoked:
                return record
            record = _revoked(record, at)
            args = (name, data, record.to_json())
            keys = (self._keys, self._version)
            if await self._call("revoke", partial(_eval, script=_REPLACE, keys=keys, args=args)):
                return record
            # Another writer changed the record in between: read it again.

    async def version(self) -> int:
        value = await self._call("version", lambda c: c.get(self._version))
        return 0 if value is None else int(value)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _call(self, op: str, fn: Callable[[Redis], Any]) -> Any:
        """``await fn(client)``; backend faults as KeyStoreError."""
        from redis.exceptions import RedisError

        client = self._client
        if client is None:
            client = self._client = self._new_client()
        try:
            return await fn(client)
        except (RedisError, OSError, TimeoutError) as exc:
            raise KeyStoreError(f"key store {self._shown}: {op} failed: {exc}") from exc

    def _new_client(self) -> Redis:
        """One retry on a connection error: after a Redis restart the first call on a
        pooled connection finds it dead and should reconnect, not fail."""
        from redis.asyncio import ConnectionPool, Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError

        pool = ConnectionPool.from_url(
            self._url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.connect_timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        return Redis.from_pool(pool)


def _eval(client: Redis, *, script: str, keys: tuple[str, ...], args: tuple[Any, ...]) -> Any:
    return client.eval(script, len(keys), *keys, *args)
