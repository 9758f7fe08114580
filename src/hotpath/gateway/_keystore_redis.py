"""Gateway key records in Redis (see :mod:`hotpath.gateway._keystore`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from hotpath._errors import ConfigError, short_repr
from hotpath._options import check_positive
from hotpath.cache._redis_url import SCHEMES, redact

if TYPE_CHECKING:
    from redis.asyncio import Redis

from hotpath.gateway._keystore import (
    KeyExistsError,
    KeyRecord,
    KeyStoreError,
    decode_records,
    revoked_record,
)

__all__ = ["RedisKeyStore"]

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
        return decode_records(((k.decode(errors="replace"), v) for k, v in rows.items()), self.url)

    async def revoke(self, name: str, *, at: float) -> KeyRecord | None:
        while True:
            data = await self._call("revoke", lambda c: c.hget(self._keys, name))
            if data is None:
                return None
            record = KeyRecord.from_json(data)
            if record.revoked:
                return record
            record = revoked_record(record, at)
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
