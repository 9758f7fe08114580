"""Request traces with OpenTelemetry: an adapter, imported only when tracing is on.

:class:`Tracer` owns an OpenTelemetry ``TracerProvider`` of its own (it leaves the
process's global provider alone) with the exporter the config names. The gateway
opens a server span per request (:meth:`Tracer.start_request`), continuing the
client's W3C ``traceparent``, makes it the current span of the request's task,
opens child spans (:meth:`Tracer.span`) for the admission waits, the cache lookup
and each upstream try, and sends the current span's ``traceparent`` with every
upstream call (:meth:`Tracer.inject`).

Nothing here is imported by the gateway unless ``[observe] tracing = true``;
:func:`load_tracer` then imports OpenTelemetry and names the extra to install if
it is missing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from hotpath._errors import ConfigError
from hotpath.observe._config import ObserveConfig
from hotpath.observe._request import RequestInfo

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span

__all__ = ["Tracer", "check_tracing", "load_tracer"]

_EXTRA = "pip install 'hotpath[otel]'"
_TRACEPARENT = b"traceparent"
_TRACESTATE = b"tracestate"


def _require_otel() -> None:
    try:
        import opentelemetry.sdk.trace
        import opentelemetry.trace  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"observe.tracing needs OpenTelemetry, which is not installed: {_EXTRA}"
        ) from exc


def _otlp_exporter_class() -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise ConfigError(
            "observe.exporter = 'otlp' needs opentelemetry-exporter-otlp-proto-http, "
            f"which is not installed: {_EXTRA}"
        ) from exc
    return OTLPSpanExporter


def check_tracing(config: ObserveConfig) -> None:
    """Raise ConfigError, naming the extra to install, if ``config`` turns tracing
    on and what it needs cannot be imported (nothing is imported when it is off)."""
    if config.tracing:
        _require_otel()
        if config.exporter == "otlp":
            _otlp_exporter_class()


def _exporter(config: ObserveConfig) -> SpanExporter:
    if config.exporter == "memory":
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        return InMemorySpanExporter()
    if config.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(service_name=config.service_name)
    exporter: SpanExporter = _otlp_exporter_class()(endpoint=config.endpoint)
    return exporter


def load_tracer(config: ObserveConfig) -> Tracer | None:
    """The tracer ``config`` asks for, or ``None`` when tracing is off (then
    nothing of OpenTelemetry is imported). Raises ConfigError naming the extra
    when OpenTelemetry is missing."""
    if not config.tracing:
        return None
    _require_otel()
    return Tracer(config)


class Tracer:
    """Spans of one gateway, exported by its own ``TracerProvider``.

    ``exporter`` is the span exporter: the one ``config`` names (for ``memory``, an
    ``InMemorySpanExporter`` whose ``get_finished_spans()`` tests read), or any
    ``SpanExporter`` given, which then gets a batching processor as real exporters do.
    """

    def __init__(self, config: ObserveConfig, *, exporter: SpanExporter | None = None) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        from opentelemetry.trace import SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        from hotpath import __version__

        self.config = config
        self.exporter = exporter if exporter is not None else _exporter(config)
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": config.service_name}),
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
        )
        # In memory (tests) a span is there as soon as it ends; real exporters
        # send batches from a thread of their own, off the event loop.
        processor = (
            SimpleSpanProcessor(self.exporter)
            if config.exporter == "memory" and exporter is None
            else BatchSpanProcessor(self.exporter)
        )
        self.provider.add_span_processor(processor)
        self._tracer = self.provider.get_tracer("hotpath", __version__)
        self._propagator = TraceContextTextMapPropagator()
        self._server = SpanKind.SERVER
        self._client = SpanKind.CLIENT
        self._internal = SpanKind.INTERNAL
        self._error = Status(StatusCode.ERROR)

    def __repr__(self) -> str:
        return f"Tracer(exporter={self.config.exporter!r}, service={self.config.service_name!r})"

    def start_request(
        self, info: RequestInfo, route: str, headers: Mapping[bytes, bytes]
    ) -> object:
        """Open the request's server span, continuing the client's ``traceparent``,
        and make it current; returns what :meth:`end_request` needs."""
        from opentelemetry import context, trace

        parent = None
        traceparent = headers.get(_TRACEPARENT)
        if traceparent is not None:
            carrier = {"traceparent": traceparent.decode("latin-1")}
            state = headers.get(_TRACESTATE)
            if state is not None:
                carrier["tracestate"] = state.decode("latin-1")
            parent = self._propagator.extract(carrier)
        span = self._tracer.start_span(
            f"{info.method} {route}",
            context=parent,
            kind=self._server,
            attributes={
                "http.request.method": info.method,
                "url.path": info.path,
                "http.route": route,
                "hotpath.request_id": info.request_id,
            },
        )
        info.span = span
        return context.attach(trace.set_span_in_context(span, parent))

    def end_request(self, info: RequestInfo, token: object) -> None:
        """Close the request's span with what the request turned out to be."""
        from opentelemetry import context

        span: Span = info.span
        context.detach(token)  # type: ignore[arg-type]
        # 499: the client left before the response started (as the access line says).
        attributes: dict[str, Any] = {"http.response.status_code": info.status or 499}
        if info.model:
            attributes["gen_ai.request.model"] = info.model
        if info.deployment:
            attributes["hotpath.deployment"] = info.deployment
        if info.cache:
            attributes["hotpath.cache"] = info.cache
        if info.tier:
            attributes["hotpath.cache.tier"] = info.tier
        if info.coalesced:
            attributes["hotpath.coalesced"] = True
        if info.prompt_tokens is not None:
            attributes["gen_ai.usage.input_tokens"] = info.prompt_tokens
        if info.completion_tokens is not None:
            attributes["gen_ai.usage.output_tokens"] = info.completion_tokens
        if info.cost is not None:
            attributes["hotpath.cost_usd"] = info.cost
        span.set_attributes(attributes)
        if info.status >= 500:
            span.set_status(self._error)
        span.end()

    @contextlib.contextmanager
    def span(
        self, name: str, attributes: Mapping[str, Any] | None = None, *, client: bool = False
    ) -> Iterator[Span]:
        """A child of the current span for the block (a ``client`` span for an
        upstream call); an exception leaving the block is recorded on it."""
        kind = self._client if client else self._internal
        with self._tracer.start_as_current_span(name, kind=kind, attributes=attributes) as span:
            yield span

    def inject(self, headers: Mapping[str, str] | None) -> dict[str, str]:
        """``headers`` with the current span's ``traceparent`` (and ``tracestate``)."""
        out = dict(headers or {})
        self._propagator.inject(out)
        return out

    def flush(self) -> None:
        """Export the spans still buffered."""
        self.provider.force_flush()
