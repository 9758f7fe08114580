"""Gateway keys made at run time: the record, both stores (SQLite and a real Redis)
through one shared suite, and the per-process KeyDirectory that polls them, with
revocation reaching another replica within a second and outages served from the
last load."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from hotpath._clock import ManualClock
from hotpath._errors import ConfigError
from hotpath.gateway._config import hash_key
from hotpath.gateway._key_directory import KeyDirectory
from hotpath.gateway._keystore import (
    KeyExistsError,
    KeyRecord,
    KeyStore,
    KeyStoreError,
    key_record,
    new_key_secret,
    open_key_store,
)
from hotpath.gateway._keystore_redis import RedisKeyStore
from hotpath.gateway._keystore_sqlite import SqliteKeyStore
from redis_server import RedisServer, free_port

T0 = 1_700_000_000.0


@dataclass
class Backend:
    """One stored key set that several store objects (replicas) may open."""

    make: Callable[[], KeyStore]
    dump: Callable[[], Awaitable[bytes]]  # everything the backend holds, raw


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    made: list[KeyStore] = []
    if request.param == "sqlite":
        path = tmp_path / "keys" / "keys.db"

        def make() -> KeyStore:
            return open_key_store(f"sqlite:///{path}")

        async def dump() -> bytes:
            conn = sqlite3.connect(path)
            try:
                rows = conn.execute("SELECT name, sha256, record FROM gateway_keys").fetchall()
            finally:
                conn.close()
            files = [p.read_bytes() for p in path.parent.iterdir()]  # the WAL included
            return repr(rows).encode() + b"".join(files)

    else:
        url: str = request.getfixturevalue("redis_url")
        prefix: str = request.getfixturevalue("redis_prefix")

        def make() -> KeyStore:
            return open_key_store(url, prefix=prefix)

        async def dump() -> bytes:
            client = aioredis.Redis.from_url(url)
            try:
                out = []
                async for key in client.scan_iter(match=f"{prefix}*"):
                    kind = await client.type(key)
                    if kind == b"hash":
                        out.append(repr(await client.hgetall(key)).encode())
                    else:
                        out.append(repr(await client.get(key)).encode())
                return b"".join(out)
            finally:
                await client.aclose()

    def tracked() -> KeyStore:
        store = make()
        made.append(store)
        return store

    yield Backend(tracked, dump)
    for store in made:
        await store.aclose()


@pytest.fixture
async def store(backend: Backend) -> KeyStore:
    store = backend.make()
    await store.open()
    return store


def record(name: str = "alice", *, secret: str | None = None, **fields: Any) -> KeyRecord:
    return key_record(
        name=name,
        tenant=fields.pop("tenant", "acme"),
        secret=secret if secret is not None else new_key_secret(),
        created_at=fields.pop("created_at", T0),
        **fields,
    )


async def directory(backend: Backend, **kwargs: Any) -> KeyDirectory:
    d = KeyDirectory(backend.make(), **kwargs)
    await d.start()
    return d


# -- the stores ---------------------------------------------------------------------------


async def test_create_list_revoke_round_trip(store: KeyStore) -> None:
    """Created keys are listed oldest first; a revoked one stays listed, revoked."""
    alice = record("alice", rpm=60, tpm=10_000, budget_usd=25.5, budget_period="week")
    bob = record("bob", created_at=T0 + 1)
    await store.create(bob)
    await store.create(alice)
    assert await store.all() == [alice, bob]

    revoked = await store.revoke("alice", at=T0 + 10)
    assert revoked is not None
    assert revoked.revoked
    assert revoked.revoked_at == T0 + 10
    assert revoked == replace(alice, revoked_at=T0 + 10)
    assert await store.all() == [revoked, bob]


async def test_a_name_is_never_reused(store: KeyStore) -> None:
    await store.create(record("alice"))
    with pytest.raises(KeyExistsError, match="'alice'"):
        await store.create(record("alice", tenant="other"))
    await store.revoke("alice", at=T0 + 1)
    with pytest.raises(KeyExistsError, match="'alice'"):
        await store.create(record("alice"))
    assert [r.name for r in await store.all()] == ["alice"]


async def test_a_secret_belongs_to_one_key(store: KeyStore) -> None:
    secret = new_key_secret()
    await store.create(record("alice", secret=secret))
    with pytest.raises(KeyExistsError, match="same secret"):
        await store.create(record("bob", secret=secret))
    assert [r.name for r in await store.all()] == ["alice"]


async def test_revoke_unknown_is_none(store: KeyStore) -> None:
    before = await store.version()
    assert await store.revoke("nobody", at=T0) is None
    assert await store.version() == before


async def test_revoke_is_idempotent(store: KeyStore) -> None:
    """A second revoke keeps the first revoked_at and writes nothing."""
    await store.create(record("alice"))
    first = await store.revoke("alice", at=T0 + 1)
    version = await store.version()
    again = await store.revoke("alice", at=T0 + 2)
    assert again == first
    assert again is not None
    assert again.revoked_at == T0 + 1
    assert await store.version() == version


async def test_every_write_changes_the_version(store: KeyStore) -> None:
    seen = {await store.version()}
    await store.create(record("alice"))
    seen.add(await store.version())
    await store.create(record("bob"))
    seen.add(await store.version())
    await store.revoke("alice", at=T0)
    seen.add(await store.version())
    assert len(seen) == 4
    with pytest.raises(KeyExistsError):
        await store.create(record("bob"))
    assert await store.version() in seen


async def test_the_secret_is_not_stored(backend: Backend, store: KeyStore) -> None:
    secret = new_key_secret()
    await store.create(record("alice", secret=secret))
    await store.revoke("alice", at=T0 + 1)
    raw = await backend.dump()
    assert secret.encode() not in raw
    assert secret[3:].encode() not in raw
    assert hash_key(secret).encode() in raw


async def test_two_store_objects_share_the_keys(backend: Backend) -> None:
    one, two = backend.make(), backend.make()
    await one.create(record("alice"))
    assert [r.name for r in await two.all()] == ["alice"]
    assert await two.version() == await one.version()


async def test_racing_creates_of_one_name_store_one(backend: Backend) -> None:
    stores = [backend.make() for _ in range(4)]
    results = await asyncio.gather(
        *(s.create(record("alice", tenant=f"t{i}")) for i, s in enumerate(stores)),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 1
    assert sum(isinstance(r, KeyExistsError) for r in results) == 3
    assert len(await stores[0].all()) == 1


async def test_racing_revokes_agree_on_the_first(backend: Backend) -> None:
    stores = [backend.make() for _ in range(4)]
    await stores[0].create(record("alice"))
    results = await asyncio.gather(
        *(s.revoke("alice", at=T0 + i) for i, s in enumerate(stores, start=1))
    )
    stored = (await stores[0].all())[0]
    assert stored.revoked
    assert all(r == stored for r in results)


# -- the directory ------------------------------------------------------------------------


async def test_directory_create_lookup_revoke(backend: Backend) -> None:
    changes: list[int] = []
    clock = ManualClock(T0)
    d = await directory(backend, clock=clock, interval=3600, on_change=lambda: changes.append(1))
    try:
        rec, secret = await d.create(name="alice", tenant="acme", rpm=5)
        assert secret.startswith("hp-")
        assert rec.created_at == T0
        assert rec.sha256 == hash_key(secret)
        assert d.lookup(hash_key(secret)) == rec
        assert d.records == [rec]
        assert changes

        clock.advance(30)
        revoked = await d.revoke("alice")
        assert revoked is not None
        assert revoked.revoked_at == T0 + 30
        assert d.lookup(hash_key(secret)) is None
        assert d.records == [revoked]
        assert await d.revoke("nobody") is None
        with pytest.raises(KeyExistsError):
            await d.create(name="alice", tenant="acme")
        stats = d.stats()
        assert stats.healthy
        assert stats.poll_failures == 0
        assert stats.keys == 0
    finally:
        await d.aclose()


async def test_directory_create_validates_before_io(backend: Backend) -> None:
    d = await directory(backend, interval=3600)
    try:
        version = d.stats().loads
        with pytest.raises(ConfigError, match=r"rpm .*0"):
            await d.create(name="alice", tenant="acme", rpm=0)
        assert d.records == []
        assert d.stats().loads == version
    finally:
        await d.aclose()


async def test_a_revoke_reaches_another_replica_after_one_refresh(backend: Backend) -> None:
    a = await directory(backend, interval=3600)
    b = await directory(backend, interval=3600)
    try:
        rec, secret = await a.create(name="alice", tenant="acme")
        digest = hash_key(secret)
        assert b.lookup(digest) is None
        assert await b.refresh()
        assert b.lookup(digest) == rec
        assert not await b.refresh()  # nothing changed: no reload

        await a.revoke("alice")
        assert a.lookup(digest) is None
        assert b.lookup(digest) == rec  # b has not polled yet
        assert await b.refresh()
        assert b.lookup(digest) is None
        assert [r.revoked for r in b.records] == [True]
    finally:
        await a.aclose()
        await b.aclose()


async def _wait_for(check: Callable[[], bool], limit: float = 2.0) -> float:
    """Seconds until ``check()`` held, polled every 20 ms; fails after ``limit``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > limit:
            pytest.fail(f"not within {limit} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def test_a_revoke_reaches_another_replica_within_a_second(backend: Backend) -> None:
    """Real time, with the background polling of the default interval."""
    a = await directory(backend)
    b = await directory(backend)
    try:
        _, secret = await a.create(name="alice", tenant="acme")
        digest = hash_key(secret)
        await _wait_for(lambda: b.lookup(digest) is not None)

        await a.revoke("alice")
        elapsed = await _wait_for(lambda: b.lookup(digest) is None)
        assert elapsed < 1.0
    finally:
        await a.aclose()
        await b.aclose()


@pytest.mark.redis
async def test_an_outage_keeps_the_last_keys(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis down: lookups answer from the last load, failures are counted, one
    WARNING per outage and one INFO when it ends; writes raise."""
    url = f"{redis_server.url}?connect_timeout=0.1&timeout=0.2"
    d = KeyDirectory(open_key_store(url), interval=3600)
    await d.start()
    try:
        rec, secret = await d.create(name="alice", tenant="acme")
        redis_server.stop()
        caplog.set_level(logging.INFO, logger="hotpath.gateway")

        assert not await d.refresh()
        assert not await d.refresh()
        assert d.lookup(hash_key(secret)) == rec
        stats = d.stats()
        assert stats.poll_failures == 2
        assert not stats.healthy
        assert stats.last_error is not None
        assert "127.0.0.1" in stats.last_error
        with pytest.raises(KeyStoreError):
            await d.create(name="bob", tenant="acme")
        with pytest.raises(KeyStoreError):
            await d.revoke("alice")
        assert d.lookup(hash_key(secret)) == rec
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1

        redis_server.start()  # an empty Redis (no persistence): the keys are gone
        assert await d.refresh()
        assert d.stats().healthy
        assert d.lookup(hash_key(secret)) is None
        infos = [r for r in caplog.records if r.levelno == logging.INFO]
        assert len(infos) == 1
        assert "reachable again" in infos[0].getMessage()
    finally:
        await d.aclose()


async def test_start_fails_naming_the_url() -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0?connect_timeout=0.1&timeout=0.2"
    d = KeyDirectory(open_key_store(url), interval=3600)
    with pytest.raises(KeyStoreError, match=rf"from redis://127\.0\.0\.1:{port}/0"):
        await d.start()
    await d.aclose()


async def test_start_fails_on_an_unusable_sqlite_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    d = KeyDirectory(SqliteKeyStore(blocker / "keys.db"), interval=3600)
    with pytest.raises(KeyStoreError, match="cannot load the gateway keys from sqlite:///"):
        await d.start()
    await d.aclose()


async def test_a_hook_that_raises_does_not_break_the_directory(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    def hook() -> None:
        raise RuntimeError("boom")

    d = await directory(backend, interval=3600, on_change=hook)
    try:
        _, secret = await d.create(name="alice", tenant="acme")
        assert d.lookup(hash_key(secret)) is not None
        assert any("on_change" in r.getMessage() for r in caplog.records)
    finally:
        await d.aclose()


# -- records and validation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("name", "has space", "'has space'"),
        ("name", "", "''"),
        ("name", "x" * 129, "'xxx"),
        ("name", "ok\n", "'ok\\n'"),
        ("tenant", "", "''"),
        ("tenant", None, "None"),
        ("rpm", 0, "0"),
        ("rpm", True, "True"),
        ("rpm", 1.5, "1.5"),
        ("tpm", -3, "-3"),
        ("budget_usd", -1, "-1"),
        ("budget_usd", 0, "0"),
        ("budget_usd", float("nan"), "nan"),
        ("budget_usd", "5", "'5'"),
        ("budget_period", "year", "'year'"),
        ("created_at", float("inf"), "inf"),
    ],
)
def test_a_bad_field_is_named_with_its_value(field: str, value: object, shown: str) -> None:
    fields: dict[str, Any] = {
        "name": "alice",
        "tenant": "acme",
        "secret": "hp-secret",
        "created_at": T0,
        field: value,
    }
    with pytest.raises(ConfigError) as info:
        key_record(**fields)
    message = str(info.value)
    assert message.startswith(field)
    assert shown in message


def test_a_bad_digest_is_not_shown() -> None:
    secret = new_key_secret()
    with pytest.raises(ConfigError, match="sha256") as info:
        KeyRecord(name="alice", tenant="acme", sha256=secret, created_at=T0)
    assert secret not in str(info.value)


def test_key_record_hashes_the_secret() -> None:
    rec = key_record(name="a.b:c@d-e_f", tenant="acme", secret="hp-x", created_at=T0)
    assert rec.sha256 == hash_key("hp-x")
    assert "sha256" not in repr(rec)
    with pytest.raises(ConfigError, match="secret"):
        key_record(name="alice", tenant="acme", secret="", created_at=T0)


def test_json_round_trip() -> None:
    full = KeyRecord(
        name="alice",
        tenant="acme",
        sha256=hash_key("hp-x"),
        created_at=T0 + 0.123456789,
        revoked_at=T0 + 7.5,
        rpm=60,
        tpm=100_000,
        budget_usd=12.34,
        budget_period="day",
    )
    bare = key_record(name="bob", tenant="t", secret="hp-y", created_at=T0)
    for rec in (full, bare):
        assert KeyRecord.from_json(rec.to_json()) == rec
        assert KeyRecord.from_json(rec.to_json().decode()) == rec


def test_from_json_ignores_unknown_fields_and_rejects_bad_documents() -> None:
    data = record("alice").to_json()
    newer = data[:-1] + b',"colour":"blue"}'
    assert KeyRecord.from_json(newer) == KeyRecord.from_json(data)
    for bad in (b"not json", b"[]", b'{"name":"alice"}', b'{"name":"a b","tenant":"t"}'):
        with pytest.raises(ConfigError):
            KeyRecord.from_json(bad)


def test_public_has_no_secret_material() -> None:
    rec = record("alice", rpm=3)
    doc = rec.public()
    assert "sha256" not in doc
    assert rec.sha256 not in repr(doc)
    assert doc == {
        "name": "alice",
        "tenant": "acme",
        "created_at": T0,
        "revoked_at": None,
        "revoked": False,
        "rpm": 3,
        "tpm": None,
        "budget_usd": None,
        "budget_period": "month",
    }


def test_new_key_secrets_are_fresh() -> None:
    secrets = {new_key_secret() for _ in range(100)}
    assert len(secrets) == 100
    assert all(s.startswith("hp-") for s in secrets)
    assert {len(s) for s in secrets} == {46}


@pytest.mark.parametrize(
    "url",
    ["http://example.com/keys", "memory://", "postgres://db/keys", "sqlite://host/keys.db"],
)
def test_open_key_store_rejects_other_urls(url: str) -> None:
    with pytest.raises(ConfigError, match="URL"):
        open_key_store(url)


def test_open_key_store_hides_passwords() -> None:
    with pytest.raises(ConfigError) as info:
        open_key_store("mysql://user:hunter2@db/keys")
    assert "hunter2" not in str(info.value)


def test_open_key_store_picks_the_backend(tmp_path: Path) -> None:
    sqlite_store = open_key_store(f"sqlite:///{tmp_path}/k.db?busy_timeout=2")
    assert isinstance(sqlite_store, SqliteKeyStore)
    assert sqlite_store.path == tmp_path / "k.db"
    assert sqlite_store.busy_timeout == 2.0
    redis_store = open_key_store("redis://:pw@localhost:6379/1?prefix=x:&timeout=0.5", prefix="y:")
    assert isinstance(redis_store, RedisKeyStore)
    assert redis_store.prefix == "x:"
    assert redis_store.timeout == 0.5
    assert "pw" not in redis_store.url
    assert "pw" not in repr(redis_store)
    assert isinstance(open_key_store("unix:///tmp/r.sock"), RedisKeyStore)
    with pytest.raises(ConfigError, match="busy_timeout"):
        open_key_store(f"sqlite:///{tmp_path}/k.db?busy_timeout=-1")
