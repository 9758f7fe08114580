"""Structured logs: the JSON and text formatters, request ids (taken from a sane
``x-request-id``, echoed on every response, on every line logged while serving the
request), one access line per request, the settings that control them, and no key
or prompt in any line."""

from __future__ import annotations

import io
import logging
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway_support import chat_body, gateway_config, gateway_of, running_gateway, unique
from hotpath._errors import ConfigError
from hotpath.cli import main
from hotpath.gateway import GatewayConfig, GatewayKey, hash_key, load_config
from hotpath.observe import (
    JsonFormatter,
    RequestInfo,
    TextFormatter,
    configure_logging,
    current_request_id,
    request_id_from,
)
from hotpath.observe._request import bind_request, unbind_request
from hotpath.providers.mock import MockUpstream
from serve_support import free_port, hotpath_serve, wait_until_healthy

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
CLIENT_KEY = "sk-client-secret-7f3a9c2e51"
UPSTREAM_KEY = "sk-upstream-secret-b81d44e0c9"


def _record(msg: str = "hello %s", *args: object, **extra: Any) -> logging.LogRecord:
    logger = logging.getLogger("hotpath.test")
    return logger.makeRecord(
        logger.name, logging.INFO, __file__, 1, msg, args or ("world",), None, extra=extra
    )


# ---------------------------------------------------------------- the formatters


def test_json_line_has_ts_level_logger_message_and_extras() -> None:
    line = JsonFormatter().format(_record(model="gpt-4o-mini", status=200))
    assert "\n" not in line
    data = orjson.loads(line)
    assert ISO_UTC.match(data.pop("ts"))
    assert data == {
        "level": "INFO",
        "logger": "hotpath.test",
        "message": "hello world",
        "model": "gpt-4o-mini",
        "status": 200,
    }


def test_json_line_carries_the_bound_request_id() -> None:
    token = bind_request(RequestInfo("req-42", "POST", "/v1/chat/completions", 0.0))
    try:
        assert current_request_id() == "req-42"
        data = orjson.loads(JsonFormatter().format(_record()))
    finally:
        unbind_request(token)
    assert data["request_id"] == "req-42"
    assert "request_id" not in orjson.loads(JsonFormatter().format(_record()))


def test_json_line_puts_an_exception_in_one_field() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert line.count("\n") == 0
    data = orjson.loads(line)
    assert data["exc"].startswith("Traceback") and "ValueError: boom" in data["exc"]


def test_json_line_survives_values_json_cannot_hold() -> None:
    data = orjson.loads(JsonFormatter().format(_record(thing=object(), raw=b"\xff")))
    assert data["thing"].startswith("<object object")


def test_text_line_quotes_values_that_could_forge_a_field_or_a_line() -> None:
    line = TextFormatter().format(_record(model="evil\nINFO fake line", cache="a b", ok="x"))
    assert "\n" not in line
    assert line.endswith(' model="evil\\nINFO fake line" cache="a b" ok=x')


def test_text_line_has_the_request_id_in_brackets_and_extras_as_key_values() -> None:
    token = bind_request(RequestInfo("abc", "GET", "/healthz", 0.0))
    try:
        line = TextFormatter().format(_record(cache="hit"))
    finally:
        unbind_request(token)
    stamp, rest = line.split(" ", 1)
    assert ISO_UTC.match(stamp)
    assert rest == "INFO hotpath.test [abc] hello world cache=hit"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put back what configure_logging changes in the process."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    flags = (logging.logThreads, logging.logProcesses, logging.logMultiprocessing)
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    logging.logThreads, logging.logProcesses, logging.logMultiprocessing = flags


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_installs_one_handler_however_often_called() -> None:
    root = logging.getLogger()
    stream = io.StringIO()
    configure_logging("text", "debug", stream=stream)
    handler = configure_logging("json", "info", stream=stream)
    ours = [h for h in root.handlers if type(h).__name__ == "_HotpathHandler"]
    assert ours == [handler]
    assert root.level == logging.INFO
    logging.getLogger("uvicorn.error").warning("from uvicorn")
    assert orjson.loads(stream.getvalue().splitlines()[-1])["logger"] == "uvicorn.error"


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_rejects_unknown_formats_and_levels() -> None:
    with pytest.raises(ConfigError, match="log format"):
        configure_logging("xml", "info")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="log level"):
        configure_logging("json", "loud")


# ---------------------------------------------------------------- request ids


@pytest.mark.parametrize("value", [b"abc", b"req-1.2:3_x", b"A" * 128])
def test_a_sane_client_request_id_is_kept(value: bytes) -> None:
    assert request_id_from(value) == value.decode()


@pytest.mark.parametrize(
    "value", [None, b"", b"A" * 129, b"has space", b"new\nline", b'quote"', "é".encode()]
)
def test_an_absent_or_insane_request_id_is_replaced(value: bytes | None) -> None:
    assert HEX32.match(request_id_from(value))


# ---------------------------------------------------------------- settings


def test_log_settings_come_from_file_env_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "hotpath.toml"
    path.write_text('[server]\nlog_format = "json"\naccess_log = false\nlog_content = true\n')
    config = load_config(path, env={})
    assert (config.log_format, config.log_level, config.access_log, config.log_content) == (
        "json",
        "info",
        False,
        True,
    )
    env = {"HOTPATH_LOG_FORMAT": "text", "HOTPATH_LOG_LEVEL": "DEBUG", "HOTPATH_ACCESS_LOG": "on"}
    config = load_config(path, env=env)
    assert (config.log_format, config.log_level, config.access_log) == ("text", "debug", True)
    config = load_config(path, env=env, overrides={"server.log_format": "json"})
    assert config.log_format == "json"


def test_defaults_are_text_at_info_with_access_lines_and_no_content() -> None:
    config = GatewayConfig()
    assert (config.log_format, config.log_level, config.access_log, config.log_content) == (
        "text",
        "info",
        True,
        False,
    )


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('log_format = "xml"', "server.log_format must be one of"),
        ('log_level = "loud"', "server.log_level must be one of"),
        ('access_log = "yes"', "server.access_log must be true or false"),
        ("log_content = 1", "server.log_content must be true or false"),
    ],
)
def test_bad_log_settings_name_the_key(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "hotpath.toml"
    path.write_text(f"[server]\n{toml}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path, env={})


def test_serve_flags_set_the_log_format_and_level(monkeypatch: pytest.MonkeyPatch) -> None:
    import hotpath.gateway._serve as serve_module

    captured: dict[str, Any] = {}

    def fake_serve(path: str | None, overrides: dict[str, Any]) -> int:
        captured.update(overrides)
        return 0

    monkeypatch.setattr(serve_module, "serve", fake_serve)
    assert main(["serve", "--log-format", "json", "--log-level", "debug"]) == 0
    assert captured["server.log_format"] == "json"
    assert captured["server.log_level"] == "debug"


# ---------------------------------------------------------------- a gateway's lines


class Lines:
    """JSON lines a handler on the root logger received."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def records(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.text.splitlines() if line]

    def of(self, request_id: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("request_id") == request_id]


@pytest.fixture
def lines() -> Iterator[Lines]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    # The server's lines, not those of the test's own HTTP client.
    handler.addFilter(lambda r: r.name.startswith(("hotpath", "uvicorn")))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield Lines(stream)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream() as upstream:
        yield upstream


def _keyed(mock: MockUpstream, **options: Any) -> GatewayConfig:
    key = GatewayKey(name="team-a", sha256=hash_key(CLIENT_KEY), tenant="team-a")
    return gateway_config(mock.url, keys=(key,), api_key=UPSTREAM_KEY, **options)


def _wait_for(lines: Lines, request_id: str, logger: str) -> list[dict[str, Any]]:
    """The request's lines once its ``logger`` line is in (the server thread
    writes the access line after the response went out)."""
    deadline = time.monotonic() + 5
    while True:
        found = lines.of(request_id)
        if any(r["logger"] == logger for r in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.01)


def test_every_response_echoes_the_request_id(mock: MockUpstream, lines: Lines) -> None:
    auth = {"authorization": f"Bearer {CLIENT_KEY}"}
    with running_gateway(_keyed(mock)) as server, httpx.Client(base_url=server.base) as http:
        ok = http.post(
            "/v1/chat/completions",
            json=chat_body(unique()),
            headers={**auth, "x-request-id": "r-1"},
        )
        assert ok.status_code == 200 and ok.headers["x-request-id"] == "r-1"
        made = http.post("/v1/chat/completions", json=chat_body(unique()), headers=auth)
        assert HEX32.match(made.headers["x-request-id"])
        forged = http.post(
            "/v1/chat/completions",
            json=chat_body(unique()),
            headers={**auth, "x-request-id": "evil id;x"},
        )
        assert HEX32.match(forged.headers["x-request-id"])
        with http.stream(
            "POST",
            "/v1/chat/completions",
            json=chat_body(unique(), stream=True),
            headers={**auth, "x-request-id": "r-stream"},
        ) as stream:
            assert stream.headers["x-request-id"] == "r-stream"
            assert b"[DONE]" in stream.read()
        for response in (
            http.post("/v1/chat/completions", json=chat_body(), headers={"x-request-id": "r-401"}),
            http.post(
                "/v1/chat/completions", content=b"{", headers={**auth, "x-request-id": "r-400"}
            ),
            http.get("/nowhere", headers={"x-request-id": "r-404"}),
            http.get("/healthz", headers={"x-request-id": "r-health"}),
            http.get("/metrics", headers={"x-request-id": "r-metrics"}),
        ):
            expected = response.request.headers["x-request-id"]
            assert response.headers["x-request-id"] == expected


def test_each_request_has_one_access_line_and_its_id_on_every_line(
    mock: MockUpstream, lines: Lines
) -> None:
    auth = {"authorization": f"Bearer {CLIENT_KEY}"}
    with running_gateway(_keyed(mock)) as server, httpx.Client(base_url=server.base) as http:
        body = chat_body(unique())
        http.post("/v1/chat/completions", json=body, headers={**auth, "x-request-id": "miss-1"})
        http.post("/v1/chat/completions", json=body, headers={**auth, "x-request-id": "hit-1"})
        failed = http.post(
            "/v1/chat/completions",
            json=chat_body(unique()),
            headers={**auth, "x-request-id": "fail-1", "x-mock-fault": "503"},
        )
        assert failed.status_code == 503
        http.get("/healthz", headers={"x-request-id": "probe-1"})
        miss = _wait_for(lines, "miss-1", "hotpath.access")
        hit = _wait_for(lines, "hit-1", "hotpath.access")
        fail = _wait_for(lines, "fail-1", "hotpath.access")
        probe = _wait_for(lines, "probe-1", "hotpath.access")
    for record in lines.records():
        assert ISO_UTC.match(record["ts"])
        assert {"level", "logger", "message"} <= set(record)
    [access] = [r for r in miss if r["logger"] == "hotpath.access"]
    assert access["level"] == "INFO"
    assert access["message"] == "POST /v1/chat/completions 200"
    assert access["method"] == "POST" and access["path"] == "/v1/chat/completions"
    assert access["status"] == 200 and access["cache"] == "miss"
    assert access["model"] == "gpt-4o-mini" and access["deployment"] == "mock/gpt-4o-mini"
    assert access["duration_ms"] > 0
    [access] = [r for r in hit if r["logger"] == "hotpath.access"]
    assert (access["status"], access["cache"]) == (200, "hit")
    # The upstream failure is logged from the call's own task: with the id too.
    assert [r["logger"] for r in fail] == ["hotpath.gateway"] * 2 + ["hotpath.access"]
    assert fail[1]["level"] == "WARNING" and "503" in fail[1]["message"]
    assert fail[2]["status"] == 503
    # Probes are debug lines (here at debug level, so they are in).
    [access] = probe
    assert access["level"] == "DEBUG" and access["path"] == "/healthz"
    # The debug line of each chat request: no prompt unless log_content is on.
    [debug] = [r for r in miss if r["message"] == "chat request"]
    assert debug["model"] == "gpt-4o-mini" and "prompt" not in debug


def test_no_key_or_prompt_appears_in_any_line(mock: MockUpstream, lines: Lines) -> None:
    prompt = f"my secret plan {unique()}"
    auth = {"authorization": f"Bearer {CLIENT_KEY}"}
    with running_gateway(_keyed(mock)) as server, httpx.Client(base_url=server.base) as http:
        for headers in (
            {**auth, "x-request-id": "p-1"},
            {**auth, "x-request-id": "p-2", "x-mock-fault": "500"},
            {"authorization": "Bearer sk-wrong-key-0000", "x-request-id": "p-3"},
        ):
            http.post("/v1/chat/completions", json=chat_body(prompt), headers=headers)
        stream = chat_body(prompt + " again", stream=True)
        http.post("/v1/chat/completions", json=stream, headers={**auth, "x-request-id": "p-4"})
        http.post(
            "/v1/embeddings",
            json={"model": "text-embedding-3-small", "input": [prompt]},
            headers={**auth, "x-request-id": "p-5"},
        )
        for request_id in ("p-1", "p-2", "p-3", "p-4", "p-5"):
            _wait_for(lines, request_id, "hotpath.access")
    text = lines.text
    assert len(lines.records()) >= 5
    for secret in (prompt, "my secret plan", CLIENT_KEY, UPSTREAM_KEY, "sk-wrong-key", "Bearer"):
        assert secret not in text, secret


def test_log_content_lets_debug_lines_carry_the_prompt(mock: MockUpstream, lines: Lines) -> None:
    prompt = f"an allowed prompt {unique()}"
    auth = {"authorization": f"Bearer {CLIENT_KEY}", "x-request-id": "c-1"}
    config = _keyed(mock, log_content=True)
    with running_gateway(config) as server, httpx.Client(base_url=server.base) as http:
        http.post("/v1/chat/completions", json=chat_body(prompt), headers=auth)
        found = _wait_for(lines, "c-1", "hotpath.access")
    [debug] = [r for r in found if r["message"] == "chat request"]
    assert prompt in debug["prompt"]
    assert CLIENT_KEY not in lines.text and UPSTREAM_KEY not in lines.text


def test_access_log_off_writes_no_access_line(mock: MockUpstream, lines: Lines) -> None:
    config = gateway_config(mock.url, access_log=False)
    with running_gateway(config) as server, httpx.Client(base_url=server.base) as http:
        response = http.post("/v1/chat/completions", json=chat_body(unique()))
        assert response.headers["x-request-id"]
    time.sleep(0.05)
    assert not [r for r in lines.records() if r["logger"] == "hotpath.access"]


@pytest.mark.slow
def test_hotpath_serve_with_json_logs_writes_only_json_lines(
    mock: MockUpstream, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "stderr.log"
    args = ["--upstream", mock.url, "--port", str(port), "--cache-tiers", "memory://"]
    args += ["--log-format", "json"]
    with (
        hotpath_serve(args, tmp_path, log) as proc,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
    ):
        wait_until_healthy(http, proc, log, time.monotonic() + 60)
        response = http.post(
            "/v1/chat/completions", json=chat_body(unique()), headers={"x-request-id": "s-1"}
        )
        assert response.status_code == 200
        deadline = time.monotonic() + 5
        while '"s-1"' not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    records = [orjson.loads(line) for line in log.read_text().splitlines() if line.strip()]
    messages = [r["message"] for r in records]
    assert any(m.startswith("hotpath gateway listening on") for m in messages)
    [access] = [r for r in records if r.get("request_id") == "s-1"]
    assert access["logger"] == "hotpath.access" and access["status"] == 200


def test_an_unexpected_error_is_a_500_logged_with_the_request_id(
    mock: MockUpstream, lines: Lines
) -> None:
    def broken(request: object) -> None:
        raise RuntimeError("a bug")

    with running_gateway(gateway_config(mock.url)) as server:
        gateway_of(server).state.authenticate = broken  # type: ignore[method-assign,assignment]
        response = httpx.post(
            f"{server.base}/v1/chat/completions",
            json=chat_body(unique()),
            headers={"x-request-id": "bug-1"},
        )
        found = _wait_for(lines, "bug-1", "hotpath.access")
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "bug-1"
    assert response.json()["error"]["code"] == "internal_error"
    [error] = [r for r in found if r["level"] == "ERROR"]
    assert error["message"] == "unhandled error answering POST /v1/chat/completions"
    assert "RuntimeError: a bug" in error["exc"]
    assert found[-1]["status"] == 500


def test_observe_exports_what_its_all_says() -> None:
    import hotpath.observe

    assert sorted(hotpath.observe.__all__) == list(hotpath.observe.__all__)
    for name in hotpath.observe.__all__:
        assert hasattr(hotpath.observe, name), name


def test_a_hostile_path_cannot_forge_an_access_line(mock: MockUpstream) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        with running_gateway(gateway_config(mock.url)) as server:
            # %0A is a line break once the server has decoded the path.
            response = httpx.get(f"{server.base}/x%0AINFO%20hotpath.access%20forged")
            assert response.status_code == 404
            request_id = response.headers["x-request-id"]
            deadline = time.monotonic() + 5
            while request_id not in stream.getvalue() and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    [line] = [x for x in stream.getvalue().splitlines() if request_id in x]
    assert "'/x\\nINFO hotpath.access forged' 404" in line
