"""The gateway's configuration: TOML file < HOTPATH_* variables < flag overrides,
built into frozen value objects, with every bad input reported by key and value."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from hotpath import ConfigError
from hotpath.gateway import (
    CacheConfig,
    GatewayConfig,
    GatewayKey,
    ModelRoute,
    UpstreamConfig,
    hash_key,
    load_config,
)
from hotpath.gateway._config import DEFAULT_TIERS
from hotpath.gateway._config_load import config_from_document

CI_DIGEST = hash_key("sk-ci-key")
ALICE_DIGEST = hash_key("sk-alice-key")

FULL_TOML = f"""
[server]
host = "0.0.0.0"
port = 9000
workers = 4
max_body_bytes = 1048576

[upstreams.openai]
kind = "openai"
base_url = "https://api.openai.com/v1"
api_key_env = "HP_TEST_OPENAI_KEY"
headers = {{ "OpenAI-Organization" = "org-123" }}
connect_timeout = 5
read_timeout = 300.5
first_token_timeout = 30
max_connections = 64
forward_headers = ["X-Request-Id", "x-mock-*"]

[upstreams.claude]
kind = "anthropic"
base_url = "https://api.anthropic.com"
api_key_env = "HP_TEST_ANTHROPIC_KEY"

[models]
"gpt-4o-mini" = "openai"
sonnet = {{ upstream = "claude", model = "claude-sonnet-4-5" }}
"*" = "openai"

[cache]
tiers = ["memory://?max_entries=1000", "redis://127.0.0.1:6379/0"]
ttl = 3600
cache_sampled = false
share_across_tenants = true
namespace = "prod"

[[keys]]
name = "ci"
sha256 = "{CI_DIGEST}"
tenant = "acme"

[[keys]]
name = "alice"
sha256 = "{ALICE_DIGEST}"
"""


def write(tmp_path: Path, text: str, name: str = "hotpath.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str) -> GatewayConfig:
    return load_config(write(tmp_path, text), env={})


# ---------------------------------------------------------------- defaults


def test_no_file_no_env_gives_the_documented_defaults() -> None:
    config = load_config(None, env={})
    assert config == GatewayConfig()
    assert config.host == "127.0.0.1"
    assert config.port == 8080
    assert config.workers == 1
    assert config.max_body_bytes == 16 * 1024 * 1024
    assert config.upstreams == ()
    assert dict(config.models) == {}
    assert config.keys == ()
    assert config.cache == CacheConfig(
        enabled=True,
        tiers=("memory://?max_entries=50000", "sqlite:///.hotpath/cache.db"),
        ttl=86400.0,
        cache_sampled=True,
        share_across_tenants=False,
        namespace="hp",
    )
    assert config.cache.tiers == DEFAULT_TIERS
    assert config.cache.redis_url is None


def test_load_config_ignores_the_process_environment_unless_passed_as_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOTPATH_PORT", "1234")
    assert load_config(None).port == 8080
    assert load_config(None, env={"HOTPATH_PORT": "1234"}).port == 1234


# ---------------------------------------------------------------- a full file


def test_full_toml_file_builds_exactly_the_expected_objects(tmp_path: Path) -> None:
    config = load_text(tmp_path, FULL_TOML)
    expected = GatewayConfig(
        host="0.0.0.0",
        port=9000,
        workers=4,
        max_body_bytes=1048576,
        upstreams=(
            UpstreamConfig(
                name="openai",
                kind="openai",
                base_url="https://api.openai.com/v1",
                api_key_env="HP_TEST_OPENAI_KEY",
                headers={"OpenAI-Organization": "org-123"},
                connect_timeout=5.0,
                read_timeout=300.5,
                first_token_timeout=30.0,
                max_connections=64,
                forward_headers=("x-request-id", "x-mock-*"),
            ),
            UpstreamConfig(
                name="claude",
                kind="anthropic",
                base_url="https://api.anthropic.com",
                api_key_env="HP_TEST_ANTHROPIC_KEY",
            ),
        ),
        models={
            "gpt-4o-mini": ModelRoute(upstream="openai"),
            "sonnet": ModelRoute(upstream="claude", model="claude-sonnet-4-5"),
            "*": ModelRoute(upstream="openai"),
        },
        cache=CacheConfig(
            tiers=("memory://?max_entries=1000", "redis://127.0.0.1:6379/0"),
            ttl=3600.0,
            cache_sampled=False,
            share_across_tenants=True,
            namespace="prod",
        ),
        keys=(
            GatewayKey(name="ci", sha256=CI_DIGEST, tenant="acme"),
            GatewayKey(name="alice", sha256=ALICE_DIGEST, tenant="alice"),
        ),
    )
    assert config == expected


def test_full_toml_file_field_by_field(tmp_path: Path) -> None:
    """The same file, checked piece by piece so a failure points at one field."""
    config = load_text(tmp_path, FULL_TOML)
    assert [u.name for u in config.upstreams] == ["openai", "claude"]
    openai = config.upstream("openai")
    assert openai.kind == "openai"
    assert openai.base_url == "https://api.openai.com/v1"
    assert dict(openai.headers) == {"OpenAI-Organization": "org-123"}
    assert (openai.connect_timeout, openai.read_timeout, openai.first_token_timeout) == (
        5,
        300.5,
        30,
    )
    assert openai.max_connections == 64
    # forward_headers are lower-cased and become a tuple
    assert openai.forward_headers == ("x-request-id", "x-mock-*")
    claude = config.upstream("claude")
    assert claude.kind == "anthropic"
    assert (claude.connect_timeout, claude.read_timeout, claude.first_token_timeout) == (
        10.0,
        600.0,
        120.0,
    )
    assert config.models["gpt-4o-mini"] == ModelRoute(upstream="openai", model=None)
    assert config.models["sonnet"] == ModelRoute(upstream="claude", model="claude-sonnet-4-5")
    assert config.models["*"] == ModelRoute(upstream="openai")
    assert config.cache.redis_url == "redis://127.0.0.1:6379/0"
    assert [(k.name, k.tenant, k.sha256) for k in config.keys] == [
        ("ci", "acme", CI_DIGEST),
        ("alice", "alice", ALICE_DIGEST),
    ]


def test_config_objects_are_frozen_and_their_mappings_read_only(tmp_path: Path) -> None:
    config = load_text(tmp_path, FULL_TOML)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.cache.ttl = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.models["new"] = ModelRoute(upstream="openai")  # type: ignore[index]
    with pytest.raises(TypeError):
        config.upstream("openai").headers["x"] = "y"  # type: ignore[index]


def test_a_single_upstream_without_a_model_map_catches_every_model(tmp_path: Path) -> None:
    config = load_text(tmp_path, '[upstreams.local]\nbase_url = "http://127.0.0.1:8000/v1"\n')
    assert dict(config.models) == {"*": ModelRoute(upstream="local")}


def test_two_upstreams_without_a_model_map_route_nothing(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        '[upstreams.a]\nbase_url = "http://a.test/v1"\n[upstreams.b]\nbase_url = "http://b.test/v1"\n',
    )
    assert dict(config.models) == {}


# ---------------------------------------------------------------- precedence

PRECEDENCE = [
    pytest.param(
        "[server]\nport = 9000\n",
        ("HOTPATH_PORT", "9001"),
        ("server.port", 9002),
        lambda c: c.port,
        (9000, 9001, 9002),
        id="port",
    ),
    pytest.param(
        "[server]\nworkers = 2\n",
        ("HOTPATH_WORKERS", "3"),
        ("server.workers", 4),
        lambda c: c.workers,
        (2, 3, 4),
        id="workers",
    ),
    pytest.param(
        "[cache]\nttl = 100\n",
        ("HOTPATH_CACHE_TTL", "200.5"),
        ("cache.ttl", 300.0),
        lambda c: c.cache.ttl,
        (100, 200.5, 300.0),
        id="cache.ttl",
    ),
    pytest.param(
        '[upstream]\nbase_url = "http://file.test/v1"\n',
        ("HOTPATH_UPSTREAM", "http://env.test/v1"),
        ("upstream.base_url", "http://flag.test/v1"),
        lambda c: c.upstream("default").base_url,
        ("http://file.test/v1", "http://env.test/v1", "http://flag.test/v1"),
        id="upstream",
    ),
]


@pytest.mark.parametrize(("toml", "env_var", "override", "read", "expected"), PRECEDENCE)
def test_file_is_overridden_by_env_which_is_overridden_by_flags(
    tmp_path: Path,
    toml: str,
    env_var: tuple[str, str],
    override: tuple[str, Any],
    read: Any,
    expected: tuple[Any, Any, Any],
) -> None:
    path = write(tmp_path, toml)
    env = dict([env_var])
    overrides = dict([override])
    from_file = load_config(path, env={})
    from_env = load_config(path, env=env)
    from_flag = load_config(path, env=env, overrides=overrides)
    assert (read(from_file), read(from_env), read(from_flag)) == expected
    # a flag beats the file even without the variable
    assert read(load_config(path, env={}, overrides=overrides)) == expected[2]


def test_flag_overrides_that_are_none_leave_the_lower_sources_alone(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 9000\nworkers = 2\n")
    config = load_config(
        path,
        env={"HOTPATH_WORKERS": "3"},
        overrides={"server.port": None, "server.workers": None, "cache.ttl": None},
    )
    assert (config.port, config.workers, config.cache.ttl) == (9000, 3, 86400.0)


def test_hotpath_config_variable_names_the_file_when_no_path_is_given(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 9100\n")
    assert load_config(None, env={"HOTPATH_CONFIG": str(path)}).port == 9100


def test_explicit_path_wins_over_hotpath_config_variable(tmp_path: Path) -> None:
    chosen = write(tmp_path, "[server]\nport = 9100\n", "chosen.toml")
    ignored = write(tmp_path, "[server]\nport = 9200\n", "ignored.toml")
    assert load_config(chosen, env={"HOTPATH_CONFIG": str(ignored)}).port == 9100


def test_every_hotpath_variable_is_parsed_into_the_config() -> None:
    config = load_config(
        None,
        env={
            "HOTPATH_HOST": "0.0.0.0",
            "HOTPATH_PORT": "8181",
            "HOTPATH_WORKERS": "2",
            "HOTPATH_MAX_BODY_BYTES": "1024",
            "HOTPATH_UPSTREAM": "https://api.anthropic.com",
            "HOTPATH_UPSTREAM_KIND": "anthropic",
            "HOTPATH_UPSTREAM_API_KEY_ENV": "MY_KEY",
            "HOTPATH_CACHE": "yes",
            "HOTPATH_CACHE_TIERS": " memory:// , ,redis://127.0.0.1:6379/1 ",
            "HOTPATH_CACHE_TTL": "60",
            "HOTPATH_CACHE_SAMPLED": "off",
            "HOTPATH_CACHE_SHARED": "TRUE",
            "UNRELATED": "ignored",
        },
    )
    assert (config.host, config.port, config.workers, config.max_body_bytes) == (
        "0.0.0.0",
        8181,
        2,
        1024,
    )
    assert config.upstreams == (
        UpstreamConfig(
            name="default",
            base_url="https://api.anthropic.com",
            kind="anthropic",
            api_key_env="MY_KEY",
        ),
    )
    assert config.cache == CacheConfig(
        enabled=True,
        tiers=("memory://", "redis://127.0.0.1:6379/1"),
        ttl=60.0,
        cache_sampled=False,
        share_across_tenants=True,
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", True), ("true", True), ("On", True), ("0", False), ("false", False), ("NO", False)],
)
def test_boolean_variables_accept_the_usual_spellings(text: str, value: bool) -> None:
    assert load_config(None, env={"HOTPATH_CACHE_SAMPLED": text}).cache.cache_sampled is value


def test_hotpath_cache_off_turns_the_cache_off() -> None:
    assert load_config(None, env={"HOTPATH_CACHE": "off"}).cache.enabled is False


# ---------------------------------------------------------------- --upstream shorthand


def test_upstream_shorthand_creates_a_default_upstream_catching_every_model() -> None:
    config = load_config(None, env={}, overrides={"upstream.base_url": "http://127.0.0.1:8000/v1"})
    assert config.upstreams == (
        UpstreamConfig(name="default", base_url="http://127.0.0.1:8000/v1"),
    )
    assert dict(config.models) == {"*": ModelRoute(upstream="default")}


def test_upstream_shorthand_takes_kind_and_api_key_env_flags() -> None:
    config = load_config(
        None,
        env={},
        overrides={
            "upstream.base_url": "https://api.anthropic.com",
            "upstream.kind": "anthropic",
            "upstream.api_key_env": "ANTHROPIC_API_KEY",
        },
    )
    default = config.upstream("default")
    assert (default.kind, default.api_key_env) == ("anthropic", "ANTHROPIC_API_KEY")


def test_upstream_shorthand_sits_beside_the_files_upstreams(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[upstreams.openai]\nbase_url = "https://api.openai.com/v1"\n[models]\n"*" = "openai"\n',
    )
    config = load_config(path, env={}, overrides={"upstream.base_url": "http://local.test/v1"})
    assert [u.name for u in config.upstreams] == ["default", "openai"]
    # the file's model map is kept: the shorthand does not take it over
    assert dict(config.models) == {"*": ModelRoute(upstream="openai")}


def test_upstream_shorthand_catches_the_names_the_files_map_leaves_out(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[upstreams.openai]\nbase_url = "https://api.openai.com/v1"\n'
        '[models]\n"gpt-4o" = "openai"\n',
    )
    config = load_config(path, env={}, overrides={"upstream.base_url": "http://local.test/v1"})
    assert dict(config.models) == {
        "gpt-4o": ModelRoute(upstream="openai"),
        "*": ModelRoute(upstream="default"),
    }


# ---------------------------------------------------------------- bad input

UPSTREAM_X = '[upstreams.x]\nbase_url = "http://a.test"\n'

BAD_FILES = [
    pytest.param("[serverr]\nport = 1\n", ["'serverr'", "unknown config section"], id="section"),
    pytest.param("[server]\nprot = 1\n", ["server.prot", "unknown key"], id="server-key"),
    pytest.param("[cache]\nttl_seconds = 5\n", ["cache.ttl_seconds"], id="cache-key"),
    pytest.param(
        '[upstreams.x]\nbase_url = "http://a.test"\ntimeout = 5\n',
        ["upstreams.x.timeout"],
        id="upstream-key",
    ),
    pytest.param(
        f'[[keys]]\nname = "a"\nsha256 = "{CI_DIGEST}"\nrole = "admin"\n',
        ["keys[0].role"],
        id="keys-key",
    ),
    pytest.param('[upstream]\nbase_url = "http://a.test"\nurl = "x"\n', ["upstream.url"], id="sh"),
    pytest.param("[server]\nport = 99999\n", ["server.port", "99999"], id="port-high"),
    pytest.param("[server]\nport = -1\n", ["server.port", "-1"], id="port-negative"),
    pytest.param('[server]\nport = "80"\n', ["server.port", "'80'"], id="port-string"),
    pytest.param("[server]\nport = true\n", ["server.port", "True"], id="port-bool"),
    pytest.param("[server]\nworkers = 0\n", ["server.workers", "0"], id="workers-zero"),
    pytest.param("[server]\nmax_body_bytes = 0\n", ["server.max_body_bytes", "0"], id="body"),
    pytest.param("[server]\nhost = 5\n", ["server.host", "5"], id="host"),
    pytest.param(
        '[upstreams.x]\nbase_url = "http://a.test"\nread_timeout = -1\n',
        ["upstreams.x.read_timeout", "-1"],
        id="timeout-negative",
    ),
    pytest.param(
        '[upstreams.x]\nbase_url = "http://a.test"\nconnect_timeout = 0\n',
        ["upstreams.x.connect_timeout", "0"],
        id="timeout-zero",
    ),
    pytest.param(
        '[upstreams.x]\nbase_url = "http://a.test"\nfirst_token_timeout = inf\n',
        ["upstreams.x.first_token_timeout", "inf"],
        id="timeout-inf",
    ),
    pytest.param(
        '[upstreams.x]\nbase_url = "http://a.test"\nread_timeout = nan\n',
        ["upstreams.x.read_timeout", "nan"],
        id="timeout-nan",
    ),
    pytest.param(
        '[upstreams.x]\nbase_url = "http://a.test"\nread_timeout = "30s"\n',
        ["upstreams.x.read_timeout", "'30s'"],
        id="timeout-string",
    ),
    pytest.param(
        '[upstreams.x]\nbase_url = "ftp://files.test/v1"\n',
        ["upstreams.x.base_url", "'ftp://files.test/v1'"],
        id="base-url-ftp",
    ),
    pytest.param(
        '[upstreams.x]\nbase_url = "localhost:8000/v1"\n',
        ["upstreams.x.base_url", "'localhost:8000/v1'"],
        id="base-url-no-scheme",
    ),
    pytest.param('[upstreams.x]\nkind = "openai"\n', ["upstreams.x", "base_url"], id="no-url"),
    pytest.param(
        '[upstreams.x]\nbase_url = "http://a.test"\nkind = "gemini"\n',
        ["upstreams.x.kind", "'gemini'"],
        id="kind",
    ),
    pytest.param(
        '[upstreams.x]\nbase_url = "http://a.test"\nmax_connections = 0\n',
        ["upstreams.x.max_connections", "0"],
        id="max-connections",
    ),
    pytest.param(
        '[upstreams.x]\nbase_url = "http://a.test"\nforward_headers = "x-a"\n',
        ["upstreams.x.forward_headers", "'x-a'"],
        id="forward-headers",
    ),
    pytest.param(
        '[upstreams.x]\nbase_url = "http://a.test"\nheaders = { a = 1 }\n',
        ["upstreams.x.headers"],
        id="headers",
    ),
    pytest.param(
        '[upstreams.x]\nbase_url = "http://a.test"\n[models]\n"gpt-4o" = "nope"\n',
        ["models.gpt-4o", "'nope'"],
        id="route-unknown-upstream",
    ),
    pytest.param(
        UPSTREAM_X + '[models]\ngpt = { upstream = "y", model = "m" }\n',
        ["models.gpt", "'y'"],
        id="route-table-unknown-upstream",
    ),
    pytest.param(
        UPSTREAM_X + '[models]\ngpt = { upstream = "x", name = "m" }\n',
        ["unknown key models.gpt.name"],
        id="route-table-unknown-key",
    ),
    pytest.param(
        UPSTREAM_X + '[models]\ngpt = { upstream = "x", model = 4 }\n',
        ["models.gpt.model", "4"],
        id="route-model-not-string",
    ),
    pytest.param(
        '[upstreams.x]\nbase_url = "http://a.test"\n[models]\ngpt = 4\n',
        ["models.gpt", "4"],
        id="route-not-string",
    ),
    pytest.param(
        '[upstream]\nbase_url = "http://a.test"\n[upstreams.default]\nbase_url = "http://b.test"\n',
        ["upstream names must be unique", "'default'"],
        id="duplicate-upstream",
    ),
    pytest.param(
        '[[keys]]\nname = "ci"\nsha256 = "abc"\n',
        ["keys[ci].sha256", "'abc'", "hash-key"],
        id="sha256-short",
    ),
    pytest.param(
        f'[[keys]]\nname = "ci"\nsha256 = "{CI_DIGEST.upper()}"\n',
        ["keys[ci].sha256", CI_DIGEST.upper()],
        id="sha256-upper",
    ),
    pytest.param(
        f'[[keys]]\nname = "ci"\nsha256 = "{CI_DIGEST[:-1]}g"\n',
        ["keys[ci].sha256", f"{CI_DIGEST[:-1]}g"],
        id="sha256-not-hex",
    ),
    pytest.param(
        f'[[keys]]\nname = "ci"\nsha256 = "{CI_DIGEST}"\ntenant = ""\n',
        ["keys[ci].tenant", "''"],
        id="tenant-empty",
    ),
    pytest.param(f'[[keys]]\nsha256 = "{CI_DIGEST}"\n', ["keys[0]", "'name'"], id="key-no-name"),
    pytest.param(
        f'[[keys]]\nname = "a"\nsha256 = "{CI_DIGEST}"\n'
        f'[[keys]]\nname = "b"\nsha256 = "{CI_DIGEST}"\n',
        ["keys must be distinct", "same sha256"],
        id="duplicate-keys",
    ),
    pytest.param('keys = "x"\n', ["keys", "'x'"], id="keys-not-array"),
    pytest.param("[cache]\nttl = -5\n", ["cache.ttl", "-5"], id="ttl-negative"),
    pytest.param("[cache]\nttl = 0\n", ["cache.ttl", "0"], id="ttl-zero"),
    pytest.param("[cache]\nttl = inf\n", ["cache.ttl", "inf"], id="ttl-inf"),
    pytest.param('[cache]\ntiers = "memory://"\n', ["cache.tiers", "'memory://'"], id="tiers-str"),
    pytest.param("[cache]\ntiers = [1]\n", ["cache.tiers", "1"], id="tiers-int"),
    pytest.param("[cache]\ntiers = []\n", ["cache.tiers"], id="tiers-empty"),
    pytest.param('[cache]\nnamespace = ""\n', ["cache.namespace", "''"], id="namespace"),
    pytest.param('server = "x"\n', ["server", "'x'"], id="server-not-table"),
]


@pytest.mark.parametrize(("toml", "fragments"), BAD_FILES)
def test_bad_file_raises_config_error_naming_the_key_and_value(
    tmp_path: Path, toml: str, fragments: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, toml)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_cache_off_may_have_no_tiers(tmp_path: Path) -> None:
    config = load_text(tmp_path, "[cache]\nenabled = false\ntiers = []\n")
    assert (config.cache.enabled, config.cache.tiers) == (False, ())


def test_invalid_toml_raises_config_error_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[server\nport = 1\n")
    with pytest.raises(ConfigError, match="is not valid TOML") as info:
        load_config(path, env={})
    assert str(path) in str(info.value)


def test_missing_file_raises_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_config(path, env={})
    assert str(path) in str(info.value)


def test_missing_file_named_by_hotpath_config_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(None, env={"HOTPATH_CONFIG": str(path)})


@pytest.mark.parametrize(
    ("env", "fragments"),
    [
        ({"HOTPATH_PORT": "abc"}, ["HOTPATH_PORT", "'abc'"]),
        ({"HOTPATH_PORT": "70000"}, ["server.port", "70000"]),
        ({"HOTPATH_WORKERS": "0"}, ["server.workers", "0"]),
        ({"HOTPATH_CACHE": "maybe"}, ["HOTPATH_CACHE", "'maybe'"]),
        ({"HOTPATH_CACHE_SHARED": ""}, ["HOTPATH_CACHE_SHARED", "''"]),
        ({"HOTPATH_CACHE_TTL": "soon"}, ["HOTPATH_CACHE_TTL", "'soon'"]),
        ({"HOTPATH_CACHE_TTL": "nan"}, ["cache.ttl", "nan"]),
        ({"HOTPATH_UPSTREAM": "api.openai.com"}, ["upstreams.default.base_url", "api.openai"]),
        (
            {"HOTPATH_UPSTREAM": "http://a.test", "HOTPATH_UPSTREAM_KIND": "gemini"},
            ["upstreams.default.kind", "'gemini'"],
        ),
        ({"HOTPATH_UPSTREAM_KIND": "anthropic"}, ["upstream needs base_url"]),
    ],
)
def test_bad_environment_variable_raises_config_error_naming_it(
    env: dict[str, str], fragments: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env=env)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_bad_flag_override_raises_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"server\.port must be at most 65535, got 99999"):
        load_config(None, env={}, overrides={"server.port": 99999})


def test_env_variable_into_a_non_table_raises_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, 'upstream = "http://a.test"\n')
    with pytest.raises(ConfigError, match="upstream must be a table"):
        load_config(path, env={"HOTPATH_UPSTREAM": "http://b.test"})


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"server\.port"):
        config_from_document({"server": {"port": -3}})


def test_direct_construction_validates_like_the_loader() -> None:
    with pytest.raises(ConfigError, match=r"upstreams\.u\.read_timeout"):
        UpstreamConfig(name="u", base_url="http://a.test", read_timeout=0)
    with pytest.raises(ConfigError, match=r"models\.m names upstream 'gone'"):
        GatewayConfig(models={"m": ModelRoute(upstream="gone")})


# ---------------------------------------------------------------- secrets


def test_resolved_api_key_reads_the_named_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HP_TEST_OPENAI_KEY", "sk-test-secret-31337")
    config = load_text(tmp_path, FULL_TOML)
    assert config.upstream("openai").resolved_api_key() == "sk-test-secret-31337"
    assert "sk-test-secret-31337" not in repr(config)
    assert "sk-test-secret-31337" not in str(config)


def test_resolved_api_key_is_read_at_call_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HP_TEST_ANTHROPIC_KEY", raising=False)
    upstream = load_text(tmp_path, FULL_TOML).upstream("claude")
    assert upstream.resolved_api_key() is None
    monkeypatch.setenv("HP_TEST_ANTHROPIC_KEY", "")
    assert upstream.resolved_api_key() is None
    monkeypatch.setenv("HP_TEST_ANTHROPIC_KEY", "sk-ant-later")
    assert upstream.resolved_api_key() == "sk-ant-later"


def test_inline_api_key_wins_over_api_key_env_and_is_never_in_repr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HP_TEST_OPENAI_KEY", "sk-from-env-777")
    config = load_text(
        tmp_path,
        "[upstreams.x]\n"
        'base_url = "https://api.openai.com/v1"\n'
        'api_key = "sk-inline-secret-456"\n'
        'api_key_env = "HP_TEST_OPENAI_KEY"\n'
        'headers = { Authorization = "Bearer sk-header-secret-789" }\n',
    )
    assert config.upstream("x").resolved_api_key() == "sk-inline-secret-456"
    text = repr(config)
    for secret in ("sk-inline-secret-456", "sk-from-env-777", "sk-header-secret-789"):
        assert secret not in text


def test_key_digests_are_not_in_repr(tmp_path: Path) -> None:
    text = repr(load_text(tmp_path, FULL_TOML))
    assert "GatewayKey(name='ci', tenant='acme')" in text
    assert CI_DIGEST not in text
    assert ALICE_DIGEST not in text


def test_hash_key_is_the_sha256_hex_of_the_key() -> None:
    # FIPS 180-2 test vector
    assert hash_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.parametrize("name", ["enabled", "cache_sampled", "share_across_tenants"])
def test_cache_switches_must_be_booleans(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, f'[cache]\n{name} = "no"\n')
    with pytest.raises(ConfigError, match=rf"cache\.{name} must be true or false, got 'no'"):
        load_config(path, env={})


def test_a_non_string_api_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = write(tmp_path, '[upstreams.x]\nbase_url = "http://a.test"\napi_key = 12345\n')
    with pytest.raises(ConfigError, match=r"upstreams\.x\.api_key") as caught:
        load_config(path, env={})
    assert "12345" not in str(caught.value)
