"""What request ids, access lines and tracing add to each gateway request.

Run: ``python -m bench.observe_path``; writes ``bench/results/observe_path.md``;
takes ~1 min.

*Whole requests* through the :class:`Gateway` ASGI app, called in-process (no
server, no socket) with a provider that answers at once, as ``bench.cost_path``
does: a miss (cache off, every request calls the upstream) and a hit (memory
tier), non-streamed, each

- *bare*: the gateway's request handling as it was before request ids (a
  subclass whose ``_http`` is the old one): the baseline;
- *ids, no access line*: the request id (new, 32 hex digits), its contextvar,
  the ``x-request-id`` header, the per-model counter and the overhead histogram;
- *ids + access line, JSON* / *text*: the same with the access line written by
  the JSON / text formatter to ``/dev/null``;
- *traced*: ids, no access line, and a span per request with its children
  (admission, cache lookup, upstream try), batched (``BatchSpanProcessor``) to an
  exporter that drops them.

*Parts*: one access line alone (``Logger.log`` to a handler on ``/dev/null``) and
request id parsing, in batches.

Each figure is taken in ``ROUNDS`` interleaved rounds with its baseline; the table
shows the median over rounds and, as the ratio, the median of per-round ratios.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from bench.cost_path import Client, InstantProvider, Row, _rows, _table
from bench.timing import Figure, machine, time_async, time_sync
from hotpath._errors import HotpathError
from hotpath.gateway import CacheConfig, Gateway, GatewayConfig, ModelRoute, UpstreamConfig
from hotpath.gateway._admin import KEYS_PATH, admin_revoke_key
from hotpath.gateway._api_errors import ApiError
from hotpath.gateway._asgi import Request, send_error
from hotpath.gateway._cost_config import CostConfig
from hotpath.observe import ObserveConfig, configure_logging, request_id_from
from hotpath.observe._logging import LogFormat
from hotpath.observe._tracing import Tracer

RESULTS = Path(__file__).parent / "results" / "observe_path.md"
ROUNDS = 5


class BareGateway(Gateway):
    """The gateway's ``_http`` as it was before request ids and access lines."""

    async def _http(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if not self._started:
            await self.start()
        handler = self._routes.get((scope["method"], scope["path"]))
        if handler is None and scope["path"].startswith(KEYS_PATH) and scope["method"] == "DELETE":
            handler = admin_revoke_key
        request = Request(scope, receive, send)
        metrics = self.state.metrics
        in_flight = metrics.in_flight
        in_flight.inc()
        status = "200"
        try:
            if handler is None:
                raise self._not_found(scope["method"], scope["path"])
            await handler(self.state, request)
        except ApiError as exc:
            status = str(exc.status)
            await send_error(send, exc)
        except HotpathError as exc:
            status = "400"
            await send_error(send, ApiError(400, str(exc), param=getattr(exc, "param", None)))
        finally:
            in_flight.dec()
            route = scope["path"] if handler is not None else "unknown"
            metrics.child(metrics.requests, route, status).inc()


def _gateway(*, cache: bool, access_log: bool, traced: bool = False, bare: bool = False) -> Gateway:
    upstream = UpstreamConfig(name="mock", base_url="http://127.0.0.1:9/v1")
    config = GatewayConfig(
        upstreams=(upstream,),
        models={"*": ModelRoute(upstream="mock")},
        cache=CacheConfig(tiers=("memory://",)) if cache else CacheConfig(enabled=False),
        cost=CostConfig(store="memory://", enabled=False),
        access_log=access_log,
        observe=ObserveConfig(tracing=traced, exporter="memory"),
    )
    kind = BareGateway if bare else Gateway
    tracer = Tracer(config.observe, exporter=_Dropped()) if traced else None
    return kind(config, providers={"mock": InstantProvider()}, tracer=tracer)


class _Dropped(SpanExporter):
    """Takes every batch and drops it: the request path's share of tracing, with
    spans batched as for a real exporter, and no memory growing."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _Handler:
    """``hotpath serve``'s logging set-up (:func:`configure_logging`), to /dev/null."""

    def __init__(self) -> None:
        self.sink = open(os.devnull, "w")  # noqa: SIM115 - closed in close()
        root = logging.getLogger()
        self.level = root.level
        self.flags = (logging.logThreads, logging.logProcesses, logging.logMultiprocessing)
        self.handler = configure_logging("json", "info", stream=self.sink)

    def use(self, fmt: LogFormat) -> None:
        self.handler = configure_logging(fmt, "info", stream=self.sink)

    def close(self) -> None:
        root = logging.getLogger()
        root.removeHandler(self.handler)
        root.setLevel(self.level)
        logging.logThreads, logging.logProcesses, logging.logMultiprocessing = self.flags
        self.sink.close()


BARE_MISS = "miss, bare"
BARE_HIT = "hit, bare"


async def whole_requests(handler: _Handler) -> list[Row]:
    apps: dict[str, tuple[Gateway, LogFormat | None]] = {}
    for outcome, cache in (("miss", False), ("hit", True)):
        apps[f"{outcome}, bare"] = (_gateway(cache=cache, access_log=False, bare=True), None)
        apps[f"{outcome}, ids, no access line"] = (_gateway(cache=cache, access_log=False), None)
        apps[f"{outcome}, ids + access line, JSON"] = (
            _gateway(cache=cache, access_log=True),
            "json",
        )
        apps[f"{outcome}, ids + access line, text"] = (
            _gateway(cache=cache, access_log=True),
            "text",
        )
        apps[f"{outcome}, traced"] = (_gateway(cache=cache, access_log=False, traced=True), None)
    clients = {name: Client(app) for name, (app, _) in apps.items()}
    try:
        for app, _ in apps.values():
            await app.start()
        for client in clients.values():
            # The first request's answer is stored by its flight's task once the loop
            # turns; in-process requests never yield on their own, so let it turn now
            # (else every later "hit" would join the finished flight instead).
            await client.post()
            await asyncio.sleep(0.01)
        for name, (app, _) in apps.items():
            if app.cache is not None:
                assert app.cache.stats().tiers[0].sets == 1, name
        runs: dict[str, list[Figure]] = {name: [] for name in apps}
        for _ in range(ROUNDS):
            for name, client in clients.items():
                fmt = apps[name][1]
                if fmt is not None:
                    handler.use(fmt)
                runs[name].append(await time_async(client.post, batch=20, batches=100))
        bases = {name: BARE_HIT if name.startswith("hit") else BARE_MISS for name in apps}
        return _rows(runs, bases | {BARE_MISS: "", BARE_HIT: ""})
    finally:
        for app, _ in apps.values():
            await app.aclose()


def parts(handler: _Handler) -> list[Row]:
    access = logging.getLogger("hotpath.bench.access")
    fields = {
        "method": "POST",
        "path": "/v1/chat/completions",
        "status": 200,
        "duration_ms": 1.234,
        "model": "gpt-4o-mini",
        "cache": "hit",
    }

    def line() -> None:
        access.log(logging.INFO, "%s %s %s", "POST", "/v1/chat/completions", "200", extra=fields)

    def disabled() -> None:
        access.log(logging.DEBUG, "%s %s %s", "POST", "/v1/chat/completions", "200", extra=fields)

    def new_id() -> None:
        request_id_from(None)

    def client_id() -> None:
        request_id_from(b"client-request-0123456789")

    variants = {
        "access line below the level (debug at info)": disabled,
        "access line, JSON": line,
        "access line, text": line,
        "request id, new": new_id,
        "request id, the client's": client_id,
    }
    runs: dict[str, list[Figure]] = {name: [] for name in variants}
    for _ in range(ROUNDS):
        for name, fn in variants.items():
            handler.use("text" if name.endswith("text") else "json")
            runs[name].append(time_sync(fn, batch=200, batches=200))
    return _rows(runs, {})


def report(whole: list[Row], part: list[Row]) -> str:
    lines = [
        "# Request ids, access lines and tracing on the request path",
        "",
        f"`python -m bench.observe_path` on {time.strftime('%Y-%m-%d')}; {machine()}. "
        f"Median of {ROUNDS} interleaved rounds; the ratio is the median of per-round "
        "ratios to the baseline named.",
        "",
        "### A whole request through the gateway",
        "",
        "The `Gateway` ASGI app called in-process (no server, no socket) with a provider "
        "that answers at once; non-streamed chat completion, no keys, no limits, usage "
        "ledger off. Miss: cache off; hit: memory tier. *Bare* is the request handling "
        "before this change (no id, no contextvar, no x-request-id, no per-model counter); "
        "access lines go to /dev/null through `hotpath serve`'s logging set-up "
        "(`configure_logging`, at INFO); "
        "*traced* makes 4 spans (3 on a hit) per request, batched to an exporter that "
        "drops them (the export's own CPU, on the exporter's thread, is not counted).",
        "",
        *_table(whole, added=True),
        "",
        "### Parts",
        "",
        "Per call, in batches (`bench.timing`): median and p99 across batches.",
        "",
        *_table(part),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    started = time.perf_counter()
    handler = _Handler()
    try:
        whole = asyncio.run(whole_requests(handler))
        part = parts(handler)
    finally:
        handler.close()
    text = report(whole, part)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text, encoding="utf-8")
    print(text)
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
