"""The access lines' fast path under ``hotpath serve``'s logging set-up
(``configure_logging``): lines formatted by the gateway and written in batches,
identical to what a record would make, in order with the other lines, whole on
a shared pipe, and never lost on a clean stop. Other set-ups take the usual
record path (tests/test_logging.py)."""

from __future__ import annotations

import asyncio
import io
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from gateway_support import chat_body, gateway_config, running_gateway, unique
from hotpath.gateway import Gateway, GatewayConfig
from hotpath.gateway._cost_config import CostConfig
from hotpath.observe import JsonFormatter, TextFormatter, configure_logging
from hotpath.observe._logging import _HotpathHandler, fast_line_writer
from hotpath.providers.mock import MockUpstream

ACCESS = logging.getLogger("hotpath.access")
FIELDS: dict[str, object] = {
    "method": "POST",
    "path": "/v1/chat/completions",
    "status": 200,
    "duration_ms": 1.25,
    "model": "gpt 4o",
}


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    flags = (logging.logThreads, logging.logProcesses, logging.logMultiprocessing)
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    logging.logThreads, logging.logProcesses, logging.logMultiprocessing = flags


def configure(fmt: Any, stream: io.StringIO) -> _HotpathHandler:
    """``configure_logging``, then only its handler on the root logger, as under
    ``hotpath serve`` (pytest's own capture handlers would turn the fast path off;
    ``restore_logging`` puts them back)."""
    handler = configure_logging(fmt, "info", stream=stream)
    root = logging.getLogger()
    for other in [h for h in root.handlers if h is not handler]:
        root.removeHandler(other)
    assert isinstance(handler, _HotpathHandler)
    return handler


class Writes(io.StringIO):
    """A stream that remembers the size of each write."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def write(self, text: str) -> int:
        self.sizes.append(len(text))
        return super().write(text)


def _record_line(formatter: logging.Formatter, created: float) -> str:
    record = ACCESS.makeRecord(
        ACCESS.name, logging.INFO, "", 0, "%s", ("POST / 200",), None, None, FIELDS
    )
    record.created = created
    return formatter.format(record)


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_a_fast_line_is_the_line_a_record_would_make(fmt: Any) -> None:
    stream = io.StringIO()
    handler = configure(fmt, stream)
    writer = fast_line_writer(ACCESS, logging.INFO)
    assert writer is not None
    assert writer is handler
    writer.emit_fields(logging.INFO, ACCESS.name, "POST / 200", "req-1", FIELDS)
    writer.flush()
    [fast] = stream.getvalue().splitlines()
    assert handler.formatter is not None
    if fmt == "json":
        from_record = orjson.loads(_record_line(handler.formatter, time.time()))
        expected: dict[str, Any] = {}
        for key, value in from_record.items():
            expected[key] = value
            if key == "message":  # where the formatter puts a request's id
                expected["request_id"] = "req-1"
        got = orjson.loads(fast)
        assert got.pop("ts")[:10] == expected.pop("ts")[:10]
        assert list(got) == list(expected)
        assert got == expected
    else:
        ts, rest = fast.split(" ", 1)
        assert rest == (
            "INFO hotpath.access [req-1] POST / 200 method=POST path=/v1/chat/completions "
            'status=200 duration_ms=1.25 model="gpt 4o"'
        )
        assert ts.endswith("Z")
        assert _record_line(handler.formatter, time.time()).split(" ", 1)[1] == rest.replace(
            " [req-1]", ""
        )


def test_the_fast_path_is_taken_only_when_nothing_else_sees_the_records() -> None:
    assert isinstance(configure("json", io.StringIO()), logging.Handler)
    assert fast_line_writer(ACCESS, logging.INFO) is not None
    assert fast_line_writer(ACCESS, logging.DEBUG) is not None  # the caller checks the level
    extra = logging.StreamHandler(io.StringIO())
    ACCESS.addHandler(extra)
    try:
        assert fast_line_writer(ACCESS, logging.INFO) is None
    finally:
        ACCESS.removeHandler(extra)
    root = logging.getLogger()
    root.addHandler(extra)
    try:
        assert fast_line_writer(ACCESS, logging.INFO) is None
    finally:
        root.removeHandler(extra)
    handler = configure("json", io.StringIO())
    handler.setFormatter(logging.Formatter())
    assert fast_line_writer(ACCESS, logging.INFO) is None
    handler.setFormatter(JsonFormatter())
    handler.addFilter(lambda r: True)
    assert fast_line_writer(ACCESS, logging.INFO) is None


def test_waiting_lines_go_out_whole_in_writes_under_pipe_buf() -> None:
    stream = Writes()
    handler = configure("text", stream)
    handler.setFormatter(TextFormatter())
    lines = [f"line {i:03d} " + "x" * 90 for i in range(200)]
    for line in lines:  # no event loop: each line is written at once
        handler.emit_line(line)
    assert stream.getvalue().splitlines() == lines

    async def burst() -> None:
        for line in lines:
            handler.emit_line(line)

    stream.sizes.clear()
    stream.seek(0)
    stream.truncate()
    asyncio.run(burst())
    assert stream.getvalue() == ""  # waiting for the batch
    handler.flush()
    assert stream.getvalue().splitlines() == lines
    assert max(stream.sizes) <= 4000
    assert len(stream.sizes) < len(lines) // 10  # batched


def test_a_record_first_writes_the_lines_waiting() -> None:
    stream = io.StringIO()
    handler = configure("json", stream)

    async def interleave() -> None:
        handler.emit_line('{"n": 1}')
        logging.getLogger("hotpath.gateway").warning("second")
        handler.emit_line('{"n": 3}')

    asyncio.run(interleave())
    handler.flush()
    records = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [r.get("n", r.get("message")) for r in records] == [1, "second", 3]


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream() as upstream:
        yield upstream


def test_a_served_gateway_writes_its_access_lines_in_order(mock: MockUpstream) -> None:
    stream = io.StringIO()
    configure("json", stream)
    ids = [f"req-{uuid.uuid4().hex}" for _ in range(5)]
    with running_gateway(gateway_config(mock.url)) as server, httpx.Client() as http:
        for rid in ids:
            response = http.post(
                f"{server.base}/v1/chat/completions",
                json=chat_body(unique()),
                headers={"x-request-id": rid},
            )
            assert response.status_code == 200
        failed = http.post(
            f"{server.base}/v1/chat/completions",
            json=chat_body(unique()),
            headers={"x-request-id": "req-failed", "x-mock-fault": "500"},
        )
        assert failed.status_code == 500
    # stopped: whatever was waiting has been written
    records = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    access = [r for r in records if r["logger"] == "hotpath.access"]
    assert [r["request_id"] for r in access] == [*ids, "req-failed"]
    assert all(r["message"] == "POST /v1/chat/completions 200" for r in access[:-1])
    assert access[0]["cache"] == "miss" and access[0]["model"] == "gpt-4o-mini"
    failed_lines = [r["logger"] for r in records if r.get("request_id") == "req-failed"]
    assert failed_lines[-1] == "hotpath.access"
    assert "hotpath.gateway" in failed_lines[:-1]  # the warning came first, in order


def test_a_stopping_gateway_writes_the_lines_still_waiting() -> None:
    stream = io.StringIO()
    handler = configure("json", stream)

    async def run() -> None:
        gateway = Gateway(GatewayConfig(cost=CostConfig(store="memory://")))
        await gateway.start()
        handler.emit_line('{"n": 1}')  # waits for its batch
        assert stream.getvalue() == ""
        await gateway.aclose()
        assert stream.getvalue() == '{"n": 1}\n'

    asyncio.run(run())
