"""``hotpath spend``: the usage ledger's report on the command line, read from the
store the gateway books in, as a table or the ``/admin/spend`` JSON document, and
one-line errors with exit code 2 (bad input) or 1 (store unreachable)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hotpath._clock import ManualClock
from hotpath._spend_cli import usage_store_url
from hotpath.cli import main
from hotpath.cost import DIMENSIONS, Ledger, PriceTable, Usage, open_ledger_store, spend_table
from hotpath.cost._report import spend_document
from hotpath.gateway._config_load import ENV_VARS, config_from_document

DEC_1 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC).timestamp()
DAY = 86_400.0


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No HOTPATH_* variable of the outer environment changes the store read."""
    for var in [*ENV_VARS, "HOTPATH_CONFIG"]:
        monkeypatch.delenv(var, raising=False)


async def _record(url: str, prefix: str) -> None:
    clock = ManualClock(DEC_1)
    ledger = Ledger(open_ledger_store(url, prefix=prefix), clock=clock)
    await ledger.start()
    try:
        # 2026-12-01
        for _ in range(2):
            ledger.record(
                key="k1",
                tenant="acme",
                model="gpt-4o",
                deployment="azure",
                usage=Usage(1000, 200, cached_tokens=100),
                cost=0.5,
            )
        ledger.record(
            key="k2",
            tenant="globex",
            model="gpt-4o-mini",
            deployment="openai",
            usage=Usage(100, 50),
            cost=0.01,
        )
        ledger.record_saving(
            key="k1", tenant="acme", model="gpt-4o", deployment="azure", cost=0.5, latency=2.0
        )
        await ledger.flush()
        clock.advance(DAY)
        # 2026-12-02
        ledger.record(
            key="k1",
            tenant="acme",
            model="gpt-4o-mini",
            deployment="openai",
            usage=Usage(10, 5),
            cost=0.002,
        )
        ledger.record(
            key="k3",
            tenant="acme",
            model="mystery",
            deployment="local",
            usage=Usage(10, 10),
            cost=None,
        )
    finally:
        await ledger.aclose()


def record_usage(url: str, *, prefix: str = "hp:") -> None:
    """Book the same mix of calls over 2026-12-01 and 2026-12-02 into ``url``."""
    asyncio.run(_record(url, prefix))


@pytest.fixture
def usage_db(tmp_path: Path) -> Path:
    path = tmp_path / "ledger" / "usage.db"
    record_usage(f"sqlite:///{path}")
    return path


def spend(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["spend", *args])
    out, err = capsys.readouterr()
    return code, out, err


def table_rows(out: str) -> list[list[str]]:
    """The table's lines split on runs of spaces, without the two rules."""
    return [line.split() for line in out.splitlines() if not set(line) <= {"-", " "}]


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hotpath.toml"
    path.write_text(text)
    return path


# -- the table -------------------------------------------------------------------------


def test_table_by_model_sorted_by_cost_with_total(
    usage_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = spend(capsys, "--store", f"sqlite:///{usage_db}")
    assert (code, err) == (0, "")
    rows = table_rows(out)
    assert rows[0][:6] == ["model", "requests", "prompt", "completion", "cached", "cost"]
    assert [r[0] for r in rows[1:]] == ["gpt-4o", "gpt-4o-mini", "mystery", "total"]
    gpt4o, mini, mystery, total = rows[1:]
    # requests, prompt, completion, cached, cost $, unpriced, hits, coalesced, saved $
    assert gpt4o[1:10] == ["2", "2,000", "400", "200", "1.0000", "0", "1", "0", "0.5000"]
    assert gpt4o[10:] == ["2.0", "s"]
    assert mini[1:6] == ["2", "110", "55", "0", "0.0120"]
    assert mystery[1:7] == ["1", "10", "10", "0", "0.0000", "1"]
    assert total[1:10] == ["5", "2,120", "465", "200", "1.0120", "1", "1", "0", "0.5000"]


def test_table_is_what_spend_table_prints(
    usage_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def report() -> str:
        ledger = Ledger(open_ledger_store(f"sqlite:///{usage_db}"))
        try:
            rows = await ledger.report(by=("tenant", "day"))
        finally:
            await ledger.aclose()
        return spend_table(rows, ("tenant", "day"))

    code, out, _ = spend(capsys, "--store", f"sqlite:///{usage_db}", "--by", "tenant, day")
    assert code == 0
    assert out == asyncio.run(report())


def test_by_several_dimensions_and_filters(
    usage_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = f"sqlite:///{usage_db}"
    code, out, _ = spend(capsys, "--store", store, "--by", "day,key", "--tenant", "acme")
    assert code == 0
    rows = table_rows(out)
    assert rows[0][:3] == ["day", "key", "requests"]
    groups = {(r[0], r[1]): r[2] for r in rows[1:-1]}
    assert groups == {
        ("2026-12-01", "k1"): "2",
        ("2026-12-02", "k1"): "1",
        ("2026-12-02", "k3"): "1",
    }
    assert rows[-1][:2] == ["total", "4"]

    code, out, _ = spend(
        capsys, "--store", store, "--by", "deployment", "--model", "gpt-4o-mini", "--key", "k2"
    )
    assert code == 0
    assert [r[:3] for r in table_rows(out)[1:]] == [["openai", "1", "100"], ["total", "1", "100"]]


def test_since_and_until_bound_the_days(usage_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = f"sqlite:///{usage_db}"
    code, out, _ = spend(capsys, "--store", store, "--by", "day", "--since", "2026-12-02")
    assert code == 0
    assert [r[0] for r in table_rows(out)[1:]] == ["2026-12-02", "total"]
    code, out, _ = spend(capsys, "--store", store, "--by", "day", "--until", "2026-12-01")
    assert code == 0
    assert [r[0] for r in table_rows(out)[1:]] == ["2026-12-01", "total"]
    code, out, _ = spend(
        capsys, "--store", store, "--by", "day", "--since", "2026-12-01", "--until", "2026-12-01"
    )
    assert [r[:2] for r in table_rows(out)[1:]] == [["2026-12-01", "3"], ["total", "3"]]


def test_empty_report_prints_a_zero_total(
    usage_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = spend(capsys, "--store", f"sqlite:///{usage_db}", "--since", "2027-01-01")
    assert (code, err) == (0, "")
    rows = table_rows(out)
    assert rows[0][0] == "model"
    assert rows[1:] == [
        ["total", "0", "0", "0", "0", "0.0000", "0", "0", "0", "0.0000", "0.0", "s"]
    ]


# -- JSON -------------------------------------------------------------------------------


def test_json_is_the_admin_spend_document(
    usage_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = spend(
        capsys,
        "--store",
        f"sqlite:///{usage_db}",
        "--json",
        "--by",
        "tenant,model",
        "--tenant",
        "acme",
        "--since",
        "2026-12-01",
    )
    assert (code, err) == (0, "")
    doc = json.loads(out)
    assert set(doc) == {"by", "since", "until", "where", "prices_date", "data", "total"}
    assert doc["by"] == ["tenant", "model"]
    assert doc["since"] == "2026-12-01"
    assert doc["until"] is None
    assert doc["where"] == {"tenant": "acme"}
    assert doc["prices_date"] == PriceTable.default().date
    assert [d["group"] for d in doc["data"]] == [
        {"tenant": "acme", "model": "gpt-4o"},
        {"tenant": "acme", "model": "gpt-4o-mini"},
        {"tenant": "acme", "model": "mystery"},
    ]
    first = doc["data"][0]
    assert first["requests"] == 2
    assert first["cost_usd"] == pytest.approx(1.0)
    assert first["cache_hits"] == 1
    assert first["saved_usd"] == pytest.approx(0.5)
    assert first["saved_latency_s"] == pytest.approx(2.0)
    assert doc["data"][2]["unknown_cost"] == 1
    assert doc["total"]["group"] == {}
    assert doc["total"]["requests"] == 4
    assert doc["total"]["cost_usd"] == pytest.approx(1.002)


def test_json_of_an_empty_report(usage_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = spend(capsys, "--store", f"sqlite:///{usage_db}", "--json", "--key", "nobody")
    assert code == 0
    doc = json.loads(out)
    assert doc["data"] == []
    assert doc["where"] == {"key": "nobody"}
    assert doc["by"] == ["model"]
    assert doc["total"]["requests"] == 0
    assert doc["total"]["cost_usd"] == 0


def test_spend_document_fields() -> None:
    doc = spend_document(
        [], by=("model",), since=None, until="2026-12-31", where={}, prices_date="2026-01-01"
    )
    assert doc["by"] == ["model"]
    assert doc["until"] == "2026-12-31"
    assert doc["prices_date"] == "2026-01-01"
    assert doc["data"] == []
    assert doc["total"]["group"] == {}
    assert doc["total"]["requests"] == 0


# -- where the usage is --------------------------------------------------------------


def _store_of(toml: str) -> tuple[str, str]:
    import tomllib

    return usage_store_url(config_from_document(tomllib.loads(toml)))


def test_store_chosen_like_the_gateway() -> None:
    redis_tier = '[cache]\ntiers = ["memory://", "redis://cache:6379/0"]\n'
    assert _store_of("") == ("sqlite:///.hotpath/usage.db", "default")
    assert _store_of(redis_tier) == ("redis://cache:6379/0", "cache.tiers")
    assert _store_of(redis_tier + "enabled = false\n") == ("sqlite:///.hotpath/usage.db", "default")
    traffic = '[traffic]\nredis_url = "redis://traffic:6379/1"\n'
    assert _store_of(redis_tier + traffic) == ("redis://traffic:6379/1", "traffic.redis_url")
    # traffic.redis_url = "" keeps the gateway off Redis, cache tier or not
    no_redis = '[traffic]\nredis_url = ""\n'
    assert _store_of(redis_tier + no_redis) == ("sqlite:///.hotpath/usage.db", "default")
    cost = '[cost]\nstore = "sqlite:////var/usage.db"\n'
    assert _store_of(redis_tier + traffic + cost) == ("sqlite:////var/usage.db", "cost.store")


def test_store_from_the_config_file(
    usage_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, f'[cost]\nstore = "sqlite:///{usage_db}"\n')
    code, out, _ = spend(capsys, "--config", str(config), "--by", "tenant")
    assert code == 0
    assert [r[:2] for r in table_rows(out)[1:]] == [["acme", "4"], ["globex", "1"], ["total", "5"]]


def test_store_from_hotpath_config(
    usage_db: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_config(tmp_path, f'[cost]\nstore = "sqlite:///{usage_db}"\n')
    monkeypatch.setenv("HOTPATH_CONFIG", str(config))
    code, out, _ = spend(capsys, "--by", "tenant")
    assert code == 0
    assert table_rows(out)[-1][:2] == ["total", "5"]


def test_store_flag_wins_over_the_config(
    usage_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, '[cost]\nstore = "redis://127.0.0.1:1/0"\n')
    code, out, _ = spend(capsys, "--config", str(config), "--store", f"sqlite:///{usage_db}")
    assert code == 0
    assert table_rows(out)[-1][:2] == ["total", "5"]


def test_default_store_is_the_gateways_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    record_usage("sqlite:///.hotpath/usage.db")
    code, out, _ = spend(capsys)
    assert code == 0
    assert table_rows(out)[-1][:2] == ["total", "5"]


@pytest.mark.redis
def test_redis_store_of_the_config_with_its_namespace(
    redis_url: str, redis_prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record_usage(redis_url, prefix=redis_prefix)
    namespace = redis_prefix.removesuffix(":")
    config = write_config(
        tmp_path, f'[cache]\nnamespace = "{namespace}"\ntiers = ["memory://", "{redis_url}"]\n'
    )
    code, out, err = spend(capsys, "--config", str(config), "--by", "key", "--json")
    assert (code, err) == (0, "")
    doc = json.loads(out)
    assert [(d["group"]["key"], d["requests"]) for d in doc["data"]] == [
        ("k1", 3),
        ("k2", 1),
        ("k3", 1),
    ]
    # another namespace is another gateway's usage
    other = write_config(tmp_path, f'[cache]\nnamespace = "elsewhere"\ntiers = ["{redis_url}"]\n')
    code, out, _ = spend(capsys, "--config", str(other), "--json")
    assert code == 0
    assert json.loads(out)["data"] == []


# -- errors ---------------------------------------------------------------------------


def one_line_error(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code, out, err = spend(capsys, *args)
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith("hotpath spend: ")
    return code, err.removeprefix("hotpath spend: ").rstrip("\n")


@pytest.mark.parametrize(
    ("by", "message"),
    [
        (
            "model,color",
            "--by: unknown dimension 'color' in 'model,color' "
            "(known: day, key, tenant, model, deployment)",
        ),
        ("model,model", "--by names a dimension twice: 'model,model'"),
        (" , ", "--by must name one or more of day, key, tenant, model, deployment, got ' , '"),
    ],
)
def test_bad_by(usage_db: Path, by: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert one_line_error(capsys, "--store", f"sqlite:///{usage_db}", "--by", by) == (2, message)


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--since", "2026-12"), ("--since", "2026-02-30"), ("--until", "yesterday")],
)
def test_bad_date(
    usage_db: Path, flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert one_line_error(capsys, "--store", f"sqlite:///{usage_db}", flag, value) == (
        2,
        f"{flag} must be a date YYYY-MM-DD (UTC), got {value!r}",
    )


def test_since_after_until(usage_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = f"sqlite:///{usage_db}"
    args = ("--store", store, "--since", "2026-12-05", "--until", "2026-12-01")
    assert one_line_error(capsys, *args) == (2, "--since 2026-12-05 is after --until 2026-12-01")


def test_memory_store_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert one_line_error(capsys, "--store", "memory://") == (
        2,
        "--store 'memory://': a memory:// store lives inside the gateway process; "
        "name the sqlite:/// or redis:// store it books usage in",
    )
    config = write_config(tmp_path, '[cost]\nstore = "memory://"\n')
    code, message = one_line_error(capsys, "--config", str(config))
    assert code == 2
    assert message.startswith("cost.store 'memory://': a memory:// store lives inside")


def test_bad_store_url(capsys: pytest.CaptureFixture[str]) -> None:
    code, message = one_line_error(capsys, "--store", "postgres://db/usage")
    assert code == 2
    assert message.startswith("--store: url 'postgres://db/usage': unknown scheme 'postgres'")
    code, message = one_line_error(capsys, "--store", "sqlite://host/usage.db")
    assert code == 2
    assert message.startswith("--store: url must be sqlite:///relative/usage.db")
    assert message.endswith("got 'sqlite://host/usage.db'")


def test_missing_sqlite_file_is_not_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none" / "usage.db"
    assert one_line_error(capsys, "--store", f"sqlite:///{missing}") == (
        2,
        f"no usage recorded at {str(missing)!r} yet (from --store)",
    )
    assert not missing.parent.exists()
    monkeypatch.chdir(tmp_path)
    assert one_line_error(capsys) == (
        2,
        "no usage recorded at '.hotpath/usage.db' yet "
        "(the default usage store; --store or --config names another)",
    )
    assert not (tmp_path / ".hotpath").exists()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_unreachable_store_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"redis://:s3cret@127.0.0.1:{_closed_port()}/0"
    config = write_config(tmp_path, f'[traffic]\nredis_url = "{url}"\n')
    code, message = one_line_error(capsys, "--config", str(config))
    assert code == 1
    assert message.startswith(
        f"the usage store redis://:***@127.0.0.1:{url.rsplit(':', 1)[1]} "
        "(from traffic.redis_url) cannot be read: ConnectionError: "
    )
    assert "s3cret" not in message


def test_unreadable_sqlite_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "usage.db"
    garbage.write_bytes(b"not a database, " * 256)
    code, message = one_line_error(capsys, "--store", f"sqlite:///{garbage}")
    assert code == 1
    assert message.startswith(f"the usage store sqlite:///{garbage} (from --store) cannot be read")
    assert message.endswith("DatabaseError: file is not a database")


def test_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, "[cost]\nstroe = 'sqlite:///x.db'\n")
    code, message = one_line_error(capsys, "--config", str(config))
    assert code == 2
    assert message.startswith("bad configuration: unknown key cost.stroe (known: ")
    missing = tmp_path / "nope.toml"
    assert one_line_error(capsys, "--config", str(missing)) == (
        2,
        f"bad configuration: config file {str(missing)!r} does not exist",
    )


def test_flag_dimensions_are_the_ledgers() -> None:
    from hotpath import _spend_cli

    assert _spend_cli._DIMENSIONS == DIMENSIONS


# -- the installed command -------------------------------------------------------------


def _hotpath_script() -> str:
    beside = Path(sys.executable).parent / "hotpath"
    found = str(beside) if beside.is_file() else shutil.which("hotpath")
    assert found is not None, "the hotpath console script is not installed"
    return found


def test_console_script(usage_db: Path, tmp_path: Path) -> None:
    env: dict[str, Any] = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    ok = subprocess.run(
        [_hotpath_script(), "spend", "--store", f"sqlite:///{usage_db}", "--json", "--by", "day"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert (ok.returncode, ok.stderr) == (0, "")
    assert [d["group"]["day"] for d in json.loads(ok.stdout)["data"]] == [
        "2026-12-01",
        "2026-12-02",
    ]
    bad = subprocess.run(
        [_hotpath_script(), "spend", "--since", "soon"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr == "hotpath spend: --since must be a date YYYY-MM-DD (UTC), got 'soon'\n"
