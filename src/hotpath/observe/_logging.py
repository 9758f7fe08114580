"""Structured logs on stdlib :mod:`logging`: a JSON-lines formatter, a text one,
and :func:`configure_logging` for ``hotpath serve``.

Both formatters stamp each record with the id of the request being served
(:func:`~hotpath.observe.current_request_id`), so a line logged by any module
while a request is served (the cache, traffic control, cost accounting) can be
joined to the request's access line and its ``x-request-id``. Extras passed with
``extra={...}`` become fields. Nothing here ever reads request headers or bodies:
what a line says is what its caller put in it, and hotpath's callers never put
keys, ``Authorization`` headers, prompts or answers there (docs/observability.md).

The library itself never configures logging; ``hotpath serve`` does, and an
application embedding the gateway can install the formatters on its own handlers.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from collections.abc import Iterator, Mapping
from itertools import islice
from typing import IO, Any, Literal

import orjson

from hotpath._errors import ConfigError
from hotpath.observe._request import current_request_id

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "JsonFormatter",
    "LogFormat",
    "TextFormatter",
    "check_log_format",
    "check_log_level",
    "configure_logging",
    "fast_line_writer",
    "flush_lines",
]

LogFormat = Literal["json", "text"]
LOG_FORMATS: tuple[str, ...] = ("json", "text")
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error", "critical")

# A record with no extras has exactly the standard fields (taskName included on
# 3.12+); more means extras to look for.
_PLAIN_FIELDS = len(vars(logging.LogRecord("", 0, "", 0, "", None, None)))
# What a LogRecord carries on its own: anything else on it came in ``extra``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    # uvicorn adds a copy of its message with terminal colours
    | {"message", "asctime", "taskName", "request_id", "color_message"}
)


class _Clock:
    """ISO 8601 UTC timestamps with milliseconds; the seconds part is cached (a
    busy gateway logs many lines a second)."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def iso(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._prefix}.{int((created - second) * 1000):03d}Z"


def _extras(record: logging.LogRecord) -> Iterator[tuple[str, Any]]:
    """The fields ``extra`` put on ``record``, in the order given. A record's own
    attributes come first in its ``__dict__`` (``LogRecord.__init__`` sets them),
    so only what follows them is looked at."""
    for key, value in islice(record.__dict__.items(), _PLAIN_FIELDS, None):
        if key not in _STANDARD and not key.startswith("_"):
            yield key, value


_PLAIN = re.compile(r"[^\s\"=]*")


def _text(value: object) -> str:
    """A value of a text line: as is if it has no space, quote or ``=``, else
    quoted (a client's model name cannot forge a field or a line)."""
    text = str(value)
    if _PLAIN.fullmatch(text):
        return text
    return orjson.dumps(text).decode()


class _LineFormatter(logging.Formatter):
    """A formatter whose line is made by :meth:`line` from plain values, so that
    the access lines' fast path (which has no record) makes the same line."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = _Clock()

    def format(self, record: logging.LogRecord) -> str:
        fields = dict(_extras(record)) if len(record.__dict__) > _PLAIN_FIELDS else {}
        if record.exc_info:
            exc: str | None = self.formatException(record.exc_info)
        else:
            exc = record.exc_text or None
        return self.line(
            record.created,
            record.levelname,
            record.name,
            record.getMessage(),
            getattr(record, "request_id", None) or current_request_id(),
            fields,
            exc=exc,
            stack=self.formatStack(record.stack_info) if record.stack_info else None,
        )

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        request_id: str | None,
        fields: Mapping[str, object],
        *,
        exc: str | None = None,
        stack: str | None = None,
    ) -> str:
        """The line of a record made at ``created`` (``time.time()``) with these
        values, ``fields`` being its extras."""
        raise NotImplementedError


class JsonFormatter(_LineFormatter):
    """One JSON object per line: ``ts`` (ISO 8601, UTC), ``level``, ``logger``,
    ``message``, ``request_id`` (when a request is being served), the record's
    extras, and ``exc`` (the formatted traceback, one string) for an exception."""

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        request_id: str | None,
        fields: Mapping[str, object],
        *,
        exc: str | None = None,
        stack: str | None = None,
    ) -> str:
        out: dict[str, Any] = {
            "ts": self._clock.iso(created),
            "level": level,
            "logger": logger,
            "message": message,
        }
        if request_id is not None:
            out["request_id"] = request_id
        for key, value in fields.items():
            out.setdefault(key, value)
        if exc is not None:
            out["exc"] = exc
        if stack is not None:
            out["stack"] = stack
        return orjson.dumps(out, default=repr).decode()


class TextFormatter(_LineFormatter):
    """``2025-01-02T03:04:05.678Z INFO hotpath.access [request-id] message k=v ...``"""

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        request_id: str | None,
        fields: Mapping[str, object],
        *,
        exc: str | None = None,
        stack: str | None = None,
    ) -> str:
        parts = [self._clock.iso(created), level, logger]
        if request_id is not None:
            parts.append(f"[{request_id}]")
        parts.append(message)
        parts.extend(f"{key}={_text(value)}" for key, value in fields.items())
        line = " ".join(parts)
        if exc is not None:
            line += "\n" + exc
        if stack is not None:
            line += "\n" + stack
        return line


class _HotpathHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure_logging` installs (so that calling it again
    replaces it instead of adding a second one).

    It also takes finished lines (:meth:`emit_line`, the access lines' fast path)
    and writes them in batches: at most ``_BATCH_DELAY`` seconds after the first
    of a batch, or at once when ``_BATCH_LINES`` are waiting. A record logged the
    usual way first writes the lines waiting, so the order of lines holds. Each
    write is at most ``_CHUNK`` characters of whole lines, so that on a pipe
    shared by several workers no line is cut by another's. Lines still waiting
    when the process is killed (SIGKILL) are lost: at most ``_BATCH_DELAY``
    seconds of them.
    """

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._timer: asyncio.TimerHandle | None = None

    def emit_fields(
        self,
        level: int,
        logger: str,
        message: str,
        request_id: str | None,
        fields: Mapping[str, object],
    ) -> None:
        """Write, soon, the line a record of ``logger`` at ``level`` with ``message``
        and ``fields`` as extras would make (no exception, no stack)."""
        formatter = self.formatter
        assert isinstance(formatter, _LineFormatter)  # fast_line_writer's check
        name = logging.getLevelName(level)
        self.emit_line(formatter.line(time.time(), name, logger, message, request_id, fields))

    def emit_line(self, line: str) -> None:
        """Write ``line`` (no newline) soon."""
        self.acquire()
        try:
            self._pending.append(line)
            if len(self._pending) >= _BATCH_LINES:
                self._write_pending()
            elif self._timer is None:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:  # no loop to come back on: now
                    self._write_pending()
                else:
                    self._timer = loop.call_later(_BATCH_DELAY, self.flush)
        finally:
            self.release()

    def _write_pending(self) -> None:
        """Write the waiting lines; the handler's lock is held."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            chunk: list[str] = []
            size = 0
            for line in pending:
                if chunk and size + len(line) + 1 > _CHUNK:
                    self.stream.write("\n".join(chunk) + "\n")
                    chunk, size = [], 0
                chunk.append(line)
                size += len(line) + 1
            self.stream.write("\n".join(chunk) + "\n")
            self.stream.flush()
        except Exception as exc:  # noqa: BLE001 - a log that cannot be written is not the caller's fault
            print(
                f"hotpath: {len(pending)} log lines could not be written: {exc!r}",
                file=sys.__stderr__,
            )

    def emit(self, record: logging.LogRecord) -> None:
        if self._pending:
            self.acquire()
            try:
                self._write_pending()
            finally:
                self.release()
        super().emit(record)

    def flush(self) -> None:
        """Write the lines waiting, then flush the stream (``logging.shutdown``
        calls this at exit)."""
        self.acquire()
        try:
            self._write_pending()
        finally:
            self.release()
        super().flush()


_BATCH_DELAY = 0.05  # seconds a line may wait to be written with others
_BATCH_LINES = 256  # lines that are written at once, without waiting
_CHUNK = 4000  # characters per write: under PIPE_BUF (4096 bytes) for ASCII lines


def fast_line_writer(logger: logging.Logger, level: int) -> _HotpathHandler | None:
    """The handler :func:`configure_logging` installed, if a record of ``logger`` at
    ``level`` would go to it alone, through nothing that could change or stop it
    (no handler, filter or non-propagating logger on the way, a formatter of
    ours): then a caller may hand it finished lines (:meth:`emit_line`) instead of
    records (:meth:`emit_fields`). ``None`` otherwise, and the caller logs as
    usual."""
    handler = _installed
    if handler is None or logger.handlers or logger.filters or not logger.propagate:
        return None
    root = logging.root
    if len(root.handlers) != 1 or root.handlers[0] is not handler or root.filters:
        return None
    if handler.filters or level < handler.level or logger.parent is not root:
        return None
    if not isinstance(handler.formatter, _LineFormatter):
        return None
    return handler


_installed: _HotpathHandler | None = None


def flush_lines() -> None:
    """Write the lines waiting in the handler :func:`configure_logging` installed
    (a gateway stopping calls this; so does ``logging.shutdown`` at exit)."""
    if _installed is not None:
        _installed.flush()


def check_log_format(value: object, name: str = "server.log_format") -> LogFormat:
    if value not in LOG_FORMATS:
        raise ConfigError(f"{name} must be one of {LOG_FORMATS}, got {value!r}")
    return value  # type: ignore[return-value]


def check_log_level(value: object, name: str = "server.log_level") -> str:
    if not isinstance(value, str) or value.lower() not in LOG_LEVELS:
        raise ConfigError(f"{name} must be one of {LOG_LEVELS}, got {value!r}")
    return value.lower()


def configure_logging(
    fmt: LogFormat = "text", level: str = "info", *, stream: IO[str] | None = None
) -> logging.Handler:
    """Send every log record at ``level`` or above to ``stream`` (stderr) in
    ``fmt``: one handler on the root logger, which uvicorn's loggers propagate
    to. Calling it again replaces the handler it installed. Returns the handler.

    This is the process's logging set-up (``hotpath serve`` calls it): it also
    tells :mod:`logging` not to look up the thread and process names of each
    record, which neither format shows and which cost a third of an access line.
    """
    check_log_format(fmt, "log format")
    level = check_log_level(level, "log level")
    global _installed
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _HotpathHandler)]:
        old.flush()
        root.removeHandler(old)
    handler = _HotpathHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    _installed = handler
    root.setLevel(level.upper())
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return handler
