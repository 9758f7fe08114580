"""The ``hotpath`` command line: ``hash-key``, ``serve`` flag wiring, bad-config exits,
the start-up lines, and one real ``hotpath serve`` process."""

from __future__ import annotations

import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

import hotpath.gateway._serve as serve_module
from hotpath.cli import main
from hotpath.cost import BudgetRule
from hotpath.gateway import (
    CacheConfig,
    ConcurrencyConfig,
    GatewayConfig,
    GatewayKey,
    LimitRule,
    ModelRoute,
    TrafficConfig,
    UpstreamConfig,
    hash_key,
    load_config,
)
from hotpath.gateway._config_load import ENV_VARS
from hotpath.gateway._cost_config import AdminConfig, CostConfig
from hotpath.gateway._serve import describe
from serve_support import alive, children, free_port, hotpath_serve, wait_until_healthy

ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
ACCEPT_ALL = "no gateway keys configured: every client is accepted"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No HOTPATH_* variable of the outer environment leaks into ``hotpath serve``."""
    for var in [*ENV_VARS, "HOTPATH_CONFIG", "HOTPATH_SERVE_ARGS"]:
        monkeypatch.delenv(var, raising=False)


Captured = dict[str, Any]


@pytest.fixture
def captured_serve(monkeypatch: pytest.MonkeyPatch, clean_env: None) -> Captured:
    """Replace ``serve`` so the CLI's arguments to it can be checked without a server."""
    captured: Captured = {}

    def fake_serve(path: str | None, overrides: Mapping[str, Any]) -> int:
        captured["path"] = path
        captured["overrides"] = dict(overrides)
        return 0

    monkeypatch.setattr(serve_module, "serve", fake_serve)
    return captured


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hotpath.toml"
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- hash-key


def test_hash_key_prints_the_sha256_hex_of_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hash-key", "abc"]) == 0
    out, err = capsys.readouterr()
    assert out == ABC_SHA256 + "\n"
    assert err == ""


def test_hash_key_output_is_accepted_as_a_keys_sha256(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["hash-key", "sk-team-secret"]) == 0
    digest = capsys.readouterr().out.strip()
    assert digest == hash_key("sk-team-secret")
    path = write(tmp_path, f'[[keys]]\nname = "team"\nsha256 = "{digest}"\n')
    assert load_config(path, env={}).keys == (
        GatewayKey(name="team", sha256=digest, tenant="team"),
    )


def test_hash_key_without_a_key_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["hash-key"])
    assert info.value.code == 2
    assert "key" in capsys.readouterr().err


# ---------------------------------------------------------------- serve: flag wiring


def test_serve_flags_become_overrides_of_the_matching_keys(
    captured_serve: Captured, tmp_path: Path
) -> None:
    path = write(tmp_path, "[server]\nport = 1111\n")
    status = main(
        [
            "serve",
            "--config",
            str(path),
            "--upstream",
            "https://api.anthropic.com",
            "--upstream-kind",
            "anthropic",
            "--upstream-api-key-env",
            "ANTHROPIC_API_KEY",
            "--host",
            "0.0.0.0",
            "--port",
            "9999",
            "--workers",
            "3",
            "--cache-tiers",
            " memory:// , ,redis://127.0.0.1:6379/2",
            "--cache-ttl",
            "60",
            "--no-cache",
        ]
    )
    assert status == 0
    assert captured_serve["path"] == str(path)
    assert captured_serve["overrides"] == {
        "upstream.base_url": "https://api.anthropic.com",
        "upstream.kind": "anthropic",
        "upstream.api_key_env": "ANTHROPIC_API_KEY",
        "server.host": "0.0.0.0",
        "server.port": 9999,
        "server.workers": 3,
        "cache.ttl": 60.0,
        "cache.enabled": False,
        "cache.tiers": ["memory://", "redis://127.0.0.1:6379/2"],
    }
    config = load_config(captured_serve["path"], env={}, overrides=captured_serve["overrides"])
    assert (config.host, config.port, config.workers) == ("0.0.0.0", 9999, 3)
    assert config.upstreams == (
        UpstreamConfig(
            name="default",
            base_url="https://api.anthropic.com",
            kind="anthropic",
            api_key_env="ANTHROPIC_API_KEY",
        ),
    )
    assert dict(config.models) == {"*": ModelRoute(upstream="default")}
    assert config.cache == CacheConfig(
        enabled=False, tiers=("memory://", "redis://127.0.0.1:6379/2"), ttl=60.0
    )


def test_serve_flags_not_given_leave_env_and_file_in_charge(
    captured_serve: Captured, tmp_path: Path
) -> None:
    path = write(tmp_path, "[server]\nport = 1111\nworkers = 2\n")
    assert main(["serve", "--config", str(path), "--workers", "5"]) == 0
    overrides = captured_serve["overrides"]
    assert {k for k, v in overrides.items() if v is not None} == {"server.workers"}
    config = load_config(path, env={"HOTPATH_PORT": "2222"}, overrides=overrides)
    assert (config.port, config.workers) == (2222, 5)


def test_serve_without_config_flag_passes_no_path(captured_serve: Captured) -> None:
    assert main(["serve"]) == 0
    assert captured_serve["path"] is None


# ---------------------------------------------------------------- serve: bad configuration


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    ("toml", "flags", "fragments"),
    [
        pytest.param("[server]\nport = 99999\n", [], ["server.port", "99999"], id="file-port"),
        pytest.param("[server]\nprot = 1\n", [], ["server.prot"], id="file-unknown-key"),
        pytest.param("", ["--port", "70000"], ["server.port", "70000"], id="flag-port"),
        pytest.param("", ["--cache-ttl", "inf"], ["cache.ttl", "inf"], id="flag-ttl-inf"),
        pytest.param(
            "", ["--upstream", "api.openai.com"], ["upstreams.default.base_url"], id="flag-url"
        ),
        pytest.param(
            '[upstreams.x]\nbase_url = "http://a.test"\n[models]\nm = "y"\n',
            [],
            ["models.m", "'y'"],
            id="file-route",
        ),
    ],
)
def test_serve_with_bad_configuration_exits_2_naming_the_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    toml: str,
    flags: list[str],
    fragments: list[str],
) -> None:
    path = write(tmp_path, toml)
    assert main(["serve", "--config", str(path), *flags]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("hotpath serve: bad configuration: ")
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"


@pytest.mark.usefixtures("clean_env")
def test_serve_with_a_missing_config_file_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.toml"
    assert main(["serve", "--config", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err
    assert "does not exist" in err


@pytest.mark.usefixtures("clean_env")
def test_serve_reads_hotpath_variables_from_the_process_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOTPATH_PORT", "abc")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "HOTPATH_PORT" in err
    assert "'abc'" in err


@pytest.mark.usefixtures("clean_env")
def test_serve_reads_hotpath_config_from_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOTPATH_CONFIG", str(write(tmp_path, "[server]\nworkers = 0\n")))
    assert main(["serve"]) == 2
    assert "server.workers" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--cache-ttl", "-1"], "--cache-ttl"),
        (["--cache-ttl", "0"], "--cache-ttl"),
        (["--cache-ttl", "soon"], "'soon'"),
        (["--workers", "0"], "--workers"),
        (["--port", "http"], "--port"),
        (["--upstream-kind", "gemini"], "'gemini'"),
        (["--no-such-flag"], "--no-such-flag"),
    ],
)
def test_serve_flag_rejected_by_argparse_exits_2(
    capsys: pytest.CaptureFixture[str], flags: list[str], fragment: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", *flags])
    assert info.value.code == 2
    assert fragment in capsys.readouterr().err


# ---------------------------------------------------------------- describe


def test_describe_without_keys_says_every_client_is_accepted() -> None:
    config = GatewayConfig(
        upstreams=(UpstreamConfig(name="default", base_url="http://127.0.0.1:8000/v1"),),
        models={"*": ModelRoute(upstream="default")},
    )
    assert describe(config) == [
        "hotpath gateway listening on http://127.0.0.1:8080/v1 (1 worker)",
        "  upstreams: default (openai) http://127.0.0.1:8000/v1",
        "  cache: memory://?max_entries=50000 -> sqlite:///.hotpath/cache.db",
        "  " + ACCEPT_ALL,
        "  traffic: no rate limits; 3 attempts; breakers on; concurrency off",
        "  cost: usage in sqlite:///.hotpath/usage.db; no budgets; admin API off",
    ]


def test_describe_says_which_limits_hold_and_where_they_are_kept() -> None:
    config = GatewayConfig(
        upstreams=(UpstreamConfig(name="default", base_url="http://127.0.0.1:8000/v1"),),
        models={"*": ModelRoute(upstream="default")},
        cache=CacheConfig(tiers=("memory://", "redis://127.0.0.1:6379/0")),
        traffic=TrafficConfig(
            limits=(LimitRule(scope="tenant", rpm=600, tpm=100_000),),
            on_limit="queue",
            on_redis_error="closed",
            breaker=None,
            concurrency=ConcurrencyConfig(algorithm="vegas"),
        ),
    )
    assert describe(config)[-2] == (
        "  traffic: limits tenant:* 600 rpm 100000 tpm (queue, shared through Redis, "
        "fail closed); 3 attempts; breakers off; concurrency vegas"
    )


def test_describe_says_where_usage_budgets_and_keys_are_kept() -> None:
    config = GatewayConfig(
        upstreams=(UpstreamConfig(name="default", base_url="http://127.0.0.1:8000/v1"),),
        models={"*": ModelRoute(upstream="default")},
        cache=CacheConfig(tiers=("memory://", "redis://:secret@127.0.0.1:6379/0")),
        cost=CostConfig(budgets=(BudgetRule(scope="tenant", limit_usd=50),)),
        admin=AdminConfig(key_env="HOTPATH_ADMIN_KEY"),
    )
    assert describe(config)[-1] == (
        "  cost: usage in redis://:***@127.0.0.1:6379/0; 1 budgets (shared through Redis, "
        "fail open); admin API on (keys in redis://:***@127.0.0.1:6379/0)"
    )


def test_describe_lists_every_upstream_the_tiers_and_the_key_count() -> None:
    config = GatewayConfig(
        host="0.0.0.0",
        port=9000,
        workers=4,
        upstreams=(
            UpstreamConfig(name="openai", base_url="https://api.openai.com/v1"),
            UpstreamConfig(
                name="claude",
                base_url="https://api.anthropic.com",
                kind="anthropic",
                api_key="sk-ant-never-shown",
            ),
        ),
        models={"*": ModelRoute(upstream="openai")},
        cache=CacheConfig(tiers=("memory://", "redis://127.0.0.1:6379/0")),
        keys=(
            GatewayKey(name="a", sha256=hash_key("ka"), tenant="a"),
            GatewayKey(name="b", sha256=hash_key("kb"), tenant="b"),
        ),
    )
    lines = describe(config)
    assert lines[0] == "hotpath gateway listening on http://0.0.0.0:9000/v1 (4 workers)"
    assert lines[1] == (
        "  upstreams: openai (openai) https://api.openai.com/v1, "
        "claude (anthropic) https://api.anthropic.com"
    )
    assert lines[2] == "  cache: memory:// -> redis://127.0.0.1:6379/0"
    assert lines[3] == "  2 gateway keys configured"
    text = "\n".join(lines)
    assert ACCEPT_ALL not in text
    assert "sk-ant-never-shown" not in text
    assert hash_key("ka") not in text


def test_describe_says_when_there_is_no_upstream_and_no_cache() -> None:
    lines = describe(GatewayConfig(cache=CacheConfig(enabled=False)))
    assert "  upstreams: none" in lines
    assert "  cache: off" in lines


# ---------------------------------------------------------------- a real process


@pytest.mark.slow
def test_hotpath_serve_process_answers_reports_an_unreachable_upstream_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    port = free_port()
    log = tmp_path / "stderr.log"
    args = [
        "--upstream",
        "http://127.0.0.1:9/v1",
        "--port",
        str(port),
        "--cache-tiers",
        "memory://",
    ]
    base = f"http://127.0.0.1:{port}"
    with (
        hotpath_serve(args, tmp_path, log) as proc,
        httpx.Client(base_url=base, timeout=10.0) as client,
    ):
        wait_until_healthy(client, proc, log, time.monotonic() + 60)

        startup = log.read_text()
        assert f"hotpath gateway listening on {base}/v1 (1 worker)" in startup
        assert ACCEPT_ALL in startup
        assert "upstreams: default (openai) http://127.0.0.1:9/v1" in startup
        assert "cache: memory://\n" in startup

        response = client.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]},
        )
        assert response.status_code == 502
        assert response.headers["content-type"].startswith("application/json")
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert isinstance(error["message"], str)
        assert "127.0.0.1:9" in error["message"]
        assert error["code"] == "upstream_unreachable"

        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught, so the
        # process reports death by SIGTERM as a supervisor expects
        assert proc.wait(timeout=10) == -signal.SIGTERM
        assert "Traceback" not in log.read_text()
    # --cache-tiers replaced the default tiers: no cache file in the working directory;
    # usage is booked in the embedded default store
    assert not (tmp_path / ".hotpath" / "cache.db").exists()
    assert (tmp_path / ".hotpath" / "usage.db").exists()


@pytest.mark.slow
@pytest.mark.parametrize("when", ["serving", "starting"])
def test_workers_stop_when_their_master_is_killed(tmp_path: Path, when: str) -> None:
    """SIGKILL leaves a master no chance to stop its workers: they notice it is
    gone and stop themselves, so none is left holding the port. A worker still
    starting when its master dies (already an orphan when it could first look)
    stops too."""
    port = free_port()
    log = tmp_path / "stderr.log"
    args = ["--upstream", "http://127.0.0.1:9/v1", "--port", str(port), "--workers", "2"]
    args += ["--cache-tiers", "memory://"]
    with (
        hotpath_serve(args, tmp_path, log) as proc,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as client,
    ):
        if when == "serving":
            wait_until_healthy(client, proc, log, time.monotonic() + 60)
        deadline = time.monotonic() + 30
        workers = children(proc.pid)
        while len(workers) < 3 and time.monotonic() < deadline:  # 2 workers, 1 tracker
            time.sleep(0.01)
            workers = children(proc.pid)
        assert len(workers) == 3
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid in workers if alive(pid)] == []
        with pytest.raises(httpx.TransportError):
            client.get("/healthz")
    assert "the master process" in log.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_an_open_dashboard_does_not_hold_a_stop(tmp_path: Path, workers: int) -> None:
    """SIGTERM ends the open dashboard event streams at once (their pages reconnect),
    so the server's graceful shutdown finishes instead of waiting its grace period
    out on them and cancelling them."""
    admin = "sk-admin-stop-test"
    port = free_port()
    log = tmp_path / "stderr.log"
    config = write(
        tmp_path,
        f"""
        [admin]
        key_sha256 = "{hash_key(admin)}"
        keys_store = "sqlite:///{tmp_path / "keys.db"}"
        [cost]
        store = "memory://"
        """,
    )
    args = ["--config", str(config), "--upstream", "http://127.0.0.1:9/v1"]
    args += ["--port", str(port), "--cache-tiers", "memory://", "--workers", str(workers)]
    bearer = {"authorization": f"Bearer {admin}"}
    with (
        hotpath_serve(args, tmp_path, log) as proc,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0) as client,
    ):
        wait_until_healthy(client, proc, log, time.monotonic() + 60)
        with (
            client.stream("GET", "/dashboard/events", headers=bearer) as first,
            client.stream("GET", "/dashboard/events", headers=bearer) as second,
        ):
            assert first.status_code == 200
            assert second.status_code == 200
            streams = [first.iter_bytes(), second.iter_bytes()]
            for stream in streams:  # both are open: each has sent its history
                seen = b""
                while b"event: history" not in seen:
                    seen += next(stream)
            proc.send_signal(signal.SIGTERM)
            for stream in streams:
                for _ in stream:  # read until the server ends the stream
                    pass
        # One process re-raises the signal it caught; a master whose workers stopped
        # exits 0.
        assert proc.wait(timeout=30) == (-signal.SIGTERM if workers == 1 else 0)
    text = log.read_text()
    assert "timeout graceful shutdown exceeded" not in text
    assert "Traceback" not in text
