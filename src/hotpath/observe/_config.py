"""The ``[observe]`` settings: tracing (OpenTelemetry, an optional extra)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hotpath._errors import ConfigError
from hotpath._options import check_bool, check_http_url, check_non_negative, check_text

__all__ = ["EXPORTERS", "ObserveConfig"]

Exporter = Literal["otlp", "console", "memory"]
EXPORTERS: tuple[str, ...] = ("otlp", "console", "memory")


@dataclass(frozen=True, kw_only=True)
class ObserveConfig:
    """Tracing of gateway requests with OpenTelemetry (``pip install 'hotpath[otel]'``).

    With ``tracing`` off (the default) nothing of OpenTelemetry is imported. With
    it on, every request gets a span, continuing the client's W3C ``traceparent``,
    and each upstream try sends its own ``traceparent`` on. ``exporter``:
    ``otlp`` (OTLP over HTTP/protobuf to ``endpoint``, default
    ``$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``$OTEL_EXPORTER_OTLP_ENDPOINT``, else
    ``http://localhost:4318/v1/traces``), ``console`` (spans as JSON on stdout) or
    ``memory`` (kept in the process, for tests). ``sample_ratio`` is the share of
    new traces recorded; a client's sampling decision is followed.

    ``anomalies`` runs the streaming detectors (docs/anomaly.md) on latency, error
    rate, hit rate and spend rate per model and upstream; their alerts go to the
    log, to ``hotpath_anomaly_*`` metrics and, as a JSON POST, to ``alert_webhook``.
    """

    tracing: bool = False
    exporter: Exporter = "otlp"
    endpoint: str | None = None
    service_name: str = "hotpath"
    sample_ratio: float = 1.0
    anomalies: bool = True
    alert_webhook: str | None = None

    def __post_init__(self) -> None:
        check_bool(self.tracing, "observe.tracing")
        if self.exporter not in EXPORTERS:
            raise ConfigError(f"observe.exporter must be one of {EXPORTERS}, got {self.exporter!r}")
        if self.endpoint is not None:
            check_http_url(self.endpoint, "observe.endpoint")
        check_text(self.service_name, "observe.service_name")
        check_bool(self.anomalies, "observe.anomalies")
        if self.alert_webhook is not None:
            check_http_url(self.alert_webhook, "observe.alert_webhook")
        ratio = check_non_negative(self.sample_ratio, "observe.sample_ratio")
        if ratio > 1:
            raise ConfigError(f"observe.sample_ratio must be in [0, 1], got {self.sample_ratio!r}")
