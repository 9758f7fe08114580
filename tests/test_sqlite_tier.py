"""SQLiteTier: URLs, persistence, bounds, purge, tags, faults, threads and processes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hotpath._clock import ManualClock
from hotpath._errors import CacheError, CodecError, ConfigError, InvalidKeyError, InvalidTTLError
from hotpath.cache._codec import Codec
from hotpath.cache._record import Record
from hotpath.cache._sqlite import CHECKPOINT_EVERY, SQLiteTier
from hotpath.cache._urls import tier_from_url


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "cache.db"


@pytest.fixture
async def tier(db: Path, clock: ManualClock) -> AsyncIterator[SQLiteTier]:
    t = SQLiteTier(db, clock=clock)
    try:
        yield t
    finally:
        await t.aclose()


def raw(db: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Run ``sql`` on the file with a plain sqlite3 connection."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def overwrite(path: Path, data: bytes, offset: int | None = None) -> None:
    """Replace ``path``'s bytes (all of them, or from ``offset`` on)."""
    if offset is None:
        path.write_bytes(data)
        return
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)


def assert_consistent(db: Path) -> None:
    """The meta row matches the table, no tag link dangles, the file is sound."""
    assert raw(db, "PRAGMA integrity_check") == [("ok",)]
    count, size = raw(db, "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entries")[0]
    assert raw(db, "SELECT entries, bytes FROM meta") == [(count, size)]
    assert raw(db, "SELECT COUNT(*) FROM tags WHERE key NOT IN (SELECT key FROM entries)") == [(0,)]


# -- URLs and configuration ------------------------------------------------------------


def test_url_with_absolute_path_and_params(db: Path) -> None:
    t = tier_from_url(
        f"sqlite:///{db}?max_entries=10&max_bytes=1MB&busy_timeout=0.5&purge_interval=5"
    )
    assert isinstance(t, SQLiteTier)
    assert t.path == db
    assert str(db).startswith("/")
    assert (t.max_entries, t.max_bytes, t.busy_timeout, t.purge_interval) == (10, 10**6, 0.5, 5.0)


def test_url_with_relative_path_and_binary_size() -> None:
    t = SQLiteTier.from_url("sqlite:///hp-never-created/my%20cache.db?max_bytes=2GiB")
    assert t.path == Path("hp-never-created/my cache.db")
    assert t.max_bytes == 2 * 1024**3
    assert not t.path.parent.exists()  # nothing is opened or created at construction


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("sqlite:///x.db?colour=blue", "'colour'"),
        ("sqlite:///x.db?max_entries=0", "max_entries"),
        ("sqlite:///x.db?max_entries=ten", "'ten'"),
        ("sqlite:///x.db?max_bytes=lots", "'lots'"),
        ("sqlite:///x.db?busy_timeout=-1", "busy_timeout"),
        ("sqlite:///x.db?purge_interval=nan", "purge_interval"),
        ("sqlite://host/x.db", "empty host"),
        ("sqlite:///", "names no file"),
        ("sqlite:///:memory:", "memory://"),
        ("redis://x", "not a sqlite"),
    ],
)
def test_bad_url_names_the_problem(url: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        SQLiteTier.from_url(url)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"max_entries": 0}, "max_entries"),
        ({"max_entries": True}, "max_entries"),
        ({"max_bytes": "1GB"}, "max_bytes"),
        ({"busy_timeout": -0.1}, "busy_timeout"),
        ({"purge_interval": float("inf")}, "purge_interval"),
        ({"base_backoff": 0}, "base_backoff"),
        ({"base_backoff": 5.0, "max_backoff": 1.0}, "max_backoff"),
        ({"codec": "msgpack"}, "codec"),
        ({"clock": 42}, "clock"),
    ],
)
def test_bad_constructor_args_name_arg_and_value(
    db: Path, kwargs: dict[str, object], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle) as info:
        SQLiteTier(db, **kwargs)  # type: ignore[arg-type]
    assert repr(next(iter(kwargs.values()))) in str(info.value)


@pytest.mark.parametrize("path", [b"x.db", "", 3])
def test_bad_path_is_rejected(path: object) -> None:
    with pytest.raises(ConfigError, match="path"):
        SQLiteTier(path)  # type: ignore[arg-type]


def test_repr_shows_path_and_bounds(db: Path) -> None:
    r = repr(SQLiteTier(db, max_entries=7))
    assert r.startswith("SQLiteTier(")
    assert str(db) in r
    assert "max_entries=7" in r


async def test_first_call_creates_parent_directory(tmp_path: Path, clock: ManualClock) -> None:
    path = tmp_path / "a" / "b" / "cache.db"
    t = SQLiteTier(path, clock=clock)
    assert not path.parent.exists()
    await t.write("k", Record(1))
    assert path.exists()
    assert raw(path, "PRAGMA journal_mode") == [("wal",)]
    await t.aclose()


# -- persistence, expiry, purge ---------------------------------------------------------


async def test_data_ttls_tags_and_hits_survive_restart(db: Path, clock: ManualClock) -> None:
    first = SQLiteTier(db, clock=clock)
    await first.set("short", "s", ttl=10, tags=["t"])
    await first.set("long", {"v": [1, 2]}, ttl=1000)
    await first.write("forever", Record(b"\x00bytes", None, 0.5), ("t",))
    await first.add_hits({"long": 3, "forever": 9})
    await first.aclose()

    second = SQLiteTier(db, clock=clock)
    assert await second.get_many(["short", "long", "forever"]) == ["s", {"v": [1, 2]}, b"\x00bytes"]
    rec = await second.read("long")
    assert rec is not None
    assert rec.expires_at == pytest.approx(clock.now() + 1000)
    assert await second.hottest(5) == ["forever", "long", "short"]
    clock.advance(11)
    assert await second.get("short", "gone") == "gone"
    assert await second.get("long") == {"v": [1, 2]}
    await second.remove_tags(["t"])
    assert await second.get("forever") is None
    await second.aclose()
    assert_consistent(db)


async def test_expired_rows_are_purged_on_a_write_after_the_interval(
    db: Path, clock: ManualClock
) -> None:
    t = SQLiteTier(db, clock=clock, purge_interval=30)
    await t.set_many({f"k{i}": i for i in range(20)}, ttl=5)
    await t.set("keep", 1)
    clock.advance(10)
    await t.set("other", 2)  # interval not yet passed since the first write's purge
    assert t.stats().entries == 22
    assert await t.get("k1") is None  # expired rows are never returned
    clock.advance(25)
    await t.set("trigger", 3)
    s = t.stats()
    assert s.entries == 3
    assert s.expirations == 20
    assert raw(db, "SELECT COUNT(*) FROM entries WHERE key LIKE 'k%'") == [(1,)]  # "keep"
    await t.aclose()
    assert_consistent(db)


async def test_writing_an_expired_record_removes_the_old_value(
    tier: SQLiteTier, clock: ManualClock
) -> None:
    await tier.set("k", "old")
    await tier.write("k", Record("new", clock.now() - 1))
    assert await tier.get("k") is None


# -- bounds and eviction ------------------------------------------------------------------


async def test_entry_bound_holds_and_evictions_are_counted(db: Path, clock: ManualClock) -> None:
    t = SQLiteTier(db, clock=clock, max_entries=50)
    for i in range(200):
        await t.set(f"k{i}", i)
    s = t.stats()
    assert 45 <= s.entries <= 50
    assert s.evictions == 200 - s.entries
    assert await t.get("k199") == 199  # the newest survive
    assert await t.get("k0") is None  # the oldest go first
    await t.aclose()
    assert_consistent(db)


async def test_byte_bound_holds(db: Path, clock: ManualClock) -> None:
    t = SQLiteTier(db, clock=clock, max_bytes=20_000)
    for i in range(100):
        await t.set(f"k{i:03}", os.urandom(500))
    s = t.stats()
    assert s.bytes <= 20_000
    assert s.evictions > 0
    assert (
        s.bytes
        == raw(db, "SELECT SUM(length(value) + length(CAST(key AS BLOB))) FROM entries")[0][0]
    )
    await t.aclose()
    assert_consistent(db)


async def test_entry_larger_than_max_bytes_is_not_stored(db: Path, clock: ManualClock) -> None:
    t = SQLiteTier(db, clock=clock, max_bytes=1000)
    await t.set("small", "x")
    await t.set("big", os.urandom(2000))
    assert await t.get("big") is None
    assert await t.get("small") == "x"
    assert t.stats().evictions == 0
    await t.aclose()


async def test_hot_entries_survive_eviction_over_cold_ones(db: Path, clock: ManualClock) -> None:
    t = SQLiteTier(db, clock=clock, max_entries=40)
    for i in range(40):
        await t.set(f"k{i}", i)
    hot = [f"k{i}" for i in range(5)]  # the oldest, so plain FIFO would drop them first
    await t.add_hits(dict.fromkeys(hot, 10))
    for i in range(40, 140):
        await t.set(f"k{i}", i)
    assert await t.get_many(hot) == list(range(5))
    assert await t.hottest(5) == hot[::-1]  # equal hits: the most recently written first
    await t.aclose()
    assert_consistent(db)


async def test_get_counts_hits_that_guide_eviction(db: Path, clock: ManualClock) -> None:
    t = SQLiteTier(db, clock=clock, max_entries=20)
    await t.set_many({f"k{i}": i for i in range(20)})
    for _ in range(3):
        assert await t.get("k0") == 0
    for i in range(30):
        await t.set(f"n{i}", i)
    assert await t.get("k0") == 0
    assert (await t.hottest(1)) == ["k0"]
    await t.aclose()


async def test_expired_rows_are_evicted_before_live_ones(db: Path, clock: ManualClock) -> None:
    t = SQLiteTier(db, clock=clock, max_entries=20, purge_interval=3600)
    await t.set_many({f"live{i}": i for i in range(10)})
    await t.set_many({f"temp{i}": i for i in range(10)}, ttl=5)
    clock.advance(6)
    await t.set("new", 1)
    s = t.stats()
    assert s.expirations == 10
    assert s.evictions == 0
    assert await t.get_many([f"live{i}" for i in range(10)]) == list(range(10))
    await t.aclose()


async def test_a_batch_larger_than_the_bound_keeps_the_bound(db: Path, clock: ManualClock) -> None:
    t = SQLiteTier(db, clock=clock, max_entries=10)
    await t.set_many({f"k{i}": i for i in range(25)}, tags=["batch"])
    assert t.stats().entries <= 10
    await t.aclose()
    assert_consistent(db)


# -- tags, deletes, clear -------------------------------------------------------------------


async def test_tags_overwrite_delete_and_eviction_drop_links(db: Path, clock: ManualClock) -> None:
    t = SQLiteTier(db, clock=clock, max_entries=5)
    await t.set("a", 1, tags=["x", "y"])
    await t.set("b", 2, tags=["x"])
    await t.set("a", 3, tags=["z"])  # overwrite replaces the tag set
    assert sorted(raw(db, "SELECT tag, key FROM tags")) == [("x", "b"), ("z", "a")]
    await t.remove_tags(["x"])
    assert await t.get("b") is None
    assert await t.get("a") == 3
    assert await t.delete("a") is True
    assert await t.delete("a") is False
    assert raw(db, "SELECT COUNT(*) FROM tags") == [(0,)]
    for i in range(20):
        await t.set(f"k{i}", i, tags=["many", f"own{i}"])
    assert raw(db, "SELECT COUNT(*) FROM tags") == [(2 * t.stats().entries,)]
    await t.aclose()
    assert_consistent(db)


async def test_delete_of_expired_entry_reports_false(tier: SQLiteTier, clock: ManualClock) -> None:
    await tier.set("k", 1, ttl=1)
    clock.advance(2)
    assert await tier.delete("k") is False


async def test_clear_empties_the_file(db: Path, tier: SQLiteTier) -> None:
    await tier.set_many({"a": 1, "b": 2}, tags=["t"])
    await tier.clear()
    assert tier.stats().entries == 0
    assert tier.stats().bytes == 0
    assert await tier.get_many(["a", "b"], default=0) == [0, 0]
    assert_consistent(db)


async def test_bad_input_raises_and_writes_nothing(db: Path, tier: SQLiteTier) -> None:
    with pytest.raises(InvalidKeyError):
        await tier.set(3, 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidTTLError):
        await tier.set("k", 1, ttl=0)
    with pytest.raises(InvalidKeyError):
        await tier.set("k", 1, tags="single")
    with pytest.raises(CodecError):
        await tier.set_many({"ok": 1, "bad": object()})
    assert await tier.get("ok") is None
    assert tier.stats().errors == 0


async def test_closed_tier_refuses_calls(tier: SQLiteTier) -> None:
    await tier.aclose()
    with pytest.raises(CacheError, match="closed"):
        await tier.read("k")
    with pytest.raises(CacheError, match="closed"):
        await tier.set("k", 1)


async def test_stats_report_entries_bytes_and_sampled_latency(tier: SQLiteTier) -> None:
    await tier.set("k", "v")
    for _ in range(64):
        await tier.get("k")
    await tier.get("absent")
    s = tier.stats()
    assert (s.name, s.healthy, s.hits, s.misses, s.sets, s.entries) == ("sqlite", True, 64, 1, 1, 1)
    assert s.bytes > 0
    assert 0 < s.latency.samples <= 65
    assert s.latency.p50_us > 0


# -- faults ----------------------------------------------------------------------------------


async def test_garbage_file_is_moved_aside_and_rebuilt(
    db: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    overwrite(db, b"this is not a database, just some text" * 100)
    t = SQLiteTier(db, clock=clock)
    with caplog.at_level(logging.ERROR, logger="hotpath.cache"):
        assert await t.get("k") is None
    assert any(r.levelno == logging.ERROR and str(db) in r.getMessage() for r in caplog.records)
    aside = list(db.parent.glob("cache.db.corrupt-*"))
    assert len(aside) == 1
    assert aside[0].read_bytes().startswith(b"this is not")
    await t.set("k", "v")
    assert await t.get("k") == "v"
    s = t.stats()
    assert s.healthy
    assert s.errors == 1
    await t.aclose()
    assert_consistent(db)


async def test_file_corrupted_between_uses_is_rebuilt(
    db: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    first = SQLiteTier(db, clock=clock)
    await first.set("k", "v")
    await first.aclose()
    overwrite(db, os.urandom(8192))

    second = SQLiteTier(db, clock=clock)
    with caplog.at_level(logging.ERROR, logger="hotpath.cache"):
        await second.set("k2", "v2")  # the write is retried on the fresh database
    assert any(str(db) in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert await second.get("k2") == "v2"
    assert await second.get("k") is None
    assert second.healthy
    await second.aclose()


async def test_malformed_pages_are_detected_on_read(
    db: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    first = SQLiteTier(db, clock=clock)
    await first.set_many({f"k{i}": os.urandom(900) for i in range(300)})
    await first.aclose()
    overwrite(db, b"\xff" * 4096 * 40, offset=4096 * 2)  # keep page 1 (header, schema)

    second = SQLiteTier(db, clock=clock)
    with caplog.at_level(logging.ERROR, logger="hotpath.cache"):
        assert await second.get_many([f"k{i}" for i in range(300)]) == [None] * 300
    assert any("corrupt" in r.getMessage() for r in caplog.records)
    await second.set("fresh", 1)
    assert await second.get("fresh") == 1
    await second.aclose()
    assert_consistent(db)


async def test_unopenable_location_is_bypassed_then_retried(
    tmp_path: Path, clock: ManualClock
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a regular file where the directory should be")
    t = SQLiteTier(blocker / "cache.db", clock=clock, base_backoff=1.0)
    await t.set("k", "v")  # no exception
    assert await t.get("k") is None
    s = t.stats()
    assert s.healthy is False
    assert s.errors == 1
    assert s.entries == -1
    assert await t.hottest(3) == []
    assert await t.delete("k") is False
    assert t.stats().errors == 1  # bypassed during the backoff: the backend is not touched

    blocker.unlink()
    clock.advance(0.5)
    await t.set("k", "v")  # still inside the backoff: dropped
    clock.advance(0.6)
    await t.set("k", "v")
    assert t.healthy
    assert await t.get("k") == "v"
    await t.aclose()


class TinyDisk(SQLiteTier):
    """A tier whose connections may grow the file to only ``page_limit`` pages.

    SQLite then fails writes with a genuine SQLITE_FULL ("database or disk is full").
    """

    page_limit: int | None = 16

    def _configure(self, conn: sqlite3.Connection) -> None:
        super()._configure(conn)
        if self.page_limit is not None:
            conn.execute(f"PRAGMA max_page_count = {int(self.page_limit)}")


async def test_disk_full_is_counted_bypassed_and_recovers(
    db: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    t = TinyDisk(db, clock=clock)
    await t.set("first", "v")
    with caplog.at_level(logging.WARNING, logger="hotpath.cache"):
        for i in range(40):
            await t.set(f"k{i}", os.urandom(3000))  # incompressible: fills pages fast
    assert any("full" in r.getMessage() for r in caplog.records)
    s = t.stats()
    assert s.healthy is False
    assert s.errors >= 1
    assert await t.get("first") is None  # bypassed while unhealthy

    t.page_limit = None  # space is freed
    clock.advance(60)
    await t.set("after", "ok")
    assert t.healthy
    assert await t.get_many(["first", "after"]) == ["v", "ok"]
    await t.aclose()
    assert_consistent(db)


async def test_write_lock_held_elsewhere_drops_the_write_within_busy_timeout(
    db: Path, clock: ManualClock
) -> None:
    t = SQLiteTier(db, clock=clock, busy_timeout=0.1)
    await t.set("k", "v")
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        assert await t.get("k") == "v"  # WAL: readers are not blocked by a writer
        start = time.perf_counter()
        await t.set("k2", "v2")
        elapsed = time.perf_counter() - start
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert 0.09 <= elapsed < 0.6
    assert t.stats().errors == 1
    assert t.healthy  # contention drops that one write; the tier stays in service
    assert await t.get("k") == "v"
    await t.set("k2", "v2")
    assert await t.get("k2") == "v2"
    await t.aclose()


# -- threads and processes ---------------------------------------------------------------------


async def test_threads_share_a_tier_on_their_own_connections(db: Path) -> None:
    t = SQLiteTier(db)
    failures: list[BaseException] = []

    def work(n: int) -> None:
        async def run() -> None:
            for i in range(150):
                key = f"t{n}:{i}"
                await t.set(key, [n, i], tags=[f"thread:{n}"])
                assert await t.get(key) == [n, i]
                await t.get(f"t{(n + 1) % 4}:{i}")

        try:
            asyncio.run(run())
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert failures == []
    assert t.stats().errors == 0
    assert t.stats().entries == 600
    await t.aclose()
    assert_consistent(db)


WORKER = """
import asyncio, json, sys
from hotpath.cache._record import Record
from hotpath.cache._sqlite import CHECKPOINT_EVERY, SQLiteTier

async def main() -> None:
    path, wid, n, max_entries = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    # A generous busy_timeout: this checks correctness under contention; the timeout itself
    # is checked by test_write_lock_held_elsewhere_fails_within_busy_timeout.
    tier = SQLiteTier(path, max_entries=max_entries, purge_interval=0.01, busy_timeout=5.0)
    bad = 0
    for i in range(n):
        key = f"w{wid}:{i}"
        ttl = 0.05 if i % 7 == 0 else None
        await tier.set(key, {"key": key, "pad": "x" * (i % 64)}, ttl=ttl, tags=[f"worker:{wid}"])
        await tier.set(f"shared:{i % 10}", {"key": f"shared:{i % 10}", "by": wid})
        for other in range(4):
            want = f"w{other}:{i // 2}"
            value = await tier.get(want)
            if value is not None and value["key"] != want:
                bad += 1
        if i % 20 == 0:
            await tier.add_hits({key: 1})
            await tier.delete(f"w{wid}:{i // 3}")
    s = tier.stats()
    await tier.aclose()
    print(json.dumps({"errors": s.errors, "bad": bad, "sets": s.sets, "healthy": s.healthy}))

asyncio.run(main())
"""


def run_workers(db: Path, n: int, max_entries: int, workers: int = 4) -> list[dict[str, object]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(db), str(w), str(n), str(max_entries)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        for w in range(workers)
    ]
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=90)
        assert p.returncode == 0, err
        assert "Traceback" not in err, err
        assert "failed during" not in err, err
        reports.append(json.loads(out))
    return reports


@pytest.mark.slow
def test_processes_write_and_read_one_file_concurrently(db: Path) -> None:
    reports = run_workers(db, n=300, max_entries=1_000_000)
    assert all(r == {"errors": 0, "bad": 0, "sets": 600, "healthy": True} for r in reports)
    assert_consistent(db)
    rows = raw(db, "SELECT key, value FROM entries")
    codec = Codec()
    for key, blob in rows:
        assert isinstance(blob, bytes)
        rec = codec.decode(blob)
        assert rec is not None
        assert isinstance(rec.value, dict)
        assert rec.value["key"] == key
    keys = {k for k, _ in rows}
    # every worker key is present unless that worker deleted it or it carried a TTL
    deleted = {f"w{w}:{i // 3}" for w in range(4) for i in range(0, 300, 20)}
    for w in range(4):
        for i in range(300):
            key = f"w{w}:{i}"
            if i % 7 and key not in deleted:
                assert key in keys, key
    assert {f"shared:{j}" for j in range(10)} <= keys


@pytest.mark.slow
def test_processes_keep_the_bound_while_evicting_concurrently(db: Path) -> None:
    reports = run_workers(db, n=250, max_entries=100)
    assert all(r["errors"] == 0 and r["bad"] == 0 for r in reports)
    assert_consistent(db)
    assert raw(db, "SELECT COUNT(*) FROM entries")[0][0] <= 100  # type: ignore[operator]


async def test_hottest_skips_expired_keys(tier: SQLiteTier, clock: ManualClock) -> None:
    await tier.set("short", 1, ttl=5)
    await tier.set("long", 2)
    await tier.add_hits({"short": 100, "long": 1})
    assert await tier.hottest(5) == ["short", "long"]
    clock.advance(6)
    assert await tier.hottest(5) == ["long"]


STARTER = """
import asyncio, json, sys
from hotpath.cache._sqlite import CHECKPOINT_EVERY, SQLiteTier

async def main() -> None:
    tier = SQLiteTier(sys.argv[1], busy_timeout=5.0)
    for i in range(30):
        await tier.set(f"{sys.argv[2]}:{i}", i)
    values = await tier.get_many([f"{sys.argv[2]}:{i}" for i in range(30)])
    s = tier.stats()
    await tier.aclose()
    print(json.dumps({"ok": values == list(range(30)), "errors": s.errors, "healthy": s.healthy}))

asyncio.run(main())
"""


@pytest.mark.slow
def test_processes_starting_on_a_corrupt_file_rebuild_it_once(db: Path) -> None:
    overwrite(db, b"garbage, not a database " * 500)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER, str(db), f"p{n}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        for n in range(4)
    ]
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        reports.append(json.loads(out))
    assert all(r["ok"] and r["healthy"] and r["errors"] <= 1 for r in reports), reports
    assert len(list(db.parent.glob("cache.db.corrupt-*"))) == 1
    assert raw(db, "SELECT COUNT(*) FROM entries") == [(120,)]
    assert_consistent(db)


async def test_checkpoints_run_on_their_own_thread_and_stop_at_close(tmp_path: Path) -> None:
    tier = SQLiteTier(tmp_path / "c.db")
    blob = "x" * 3000
    for i in range(CHECKPOINT_EVERY * 3):
        await tier.set(f"k{i}", blob, ttl=60)
    names = [t.name for t in threading.enumerate()]
    assert "hotpath-sqlite-checkpoint" in names
    await tier.aclose()
    assert "hotpath-sqlite-checkpoint" not in [t.name for t in threading.enumerate()]
    reopened = SQLiteTier(tmp_path / "c.db")
    try:
        assert await reopened.get(f"k{CHECKPOINT_EVERY * 3 - 1}") == blob
        assert (await reopened.get_many([f"k{i}" for i in range(5)])) == [blob] * 5
    finally:
        await reopened.aclose()


async def test_synchronous_off_is_an_option_and_validated(tmp_path: Path) -> None:
    tier = tier_from_url(f"sqlite:///{tmp_path / 'c.db'}?synchronous=off")
    assert isinstance(tier, SQLiteTier)
    assert tier.synchronous == "off"
    try:
        await tier.set("k", "v", ttl=60)
        assert await tier.get("k") == "v"
    finally:
        await tier.aclose()
    with pytest.raises(ConfigError, match=r"synchronous must be 'normal' or 'off', got 'full'"):
        SQLiteTier(tmp_path / "d.db", synchronous="full")
