"""Observability: request ids, structured logs and traces (docs/observability.md).

Metrics are the gateway's own (``hotpath.gateway``, docs/metrics.md). Tracing is
an adapter over OpenTelemetry, an optional extra imported only when it is on.
"""

from hotpath.observe._config import ObserveConfig
from hotpath.observe._logging import JsonFormatter, TextFormatter, configure_logging
from hotpath.observe._request import (
    RequestInfo,
    current_request,
    current_request_id,
    new_request_id,
    request_id_from,
)
from hotpath.observe._tracing import Tracer, load_tracer

__all__ = [
    "JsonFormatter",
    "ObserveConfig",
    "RequestInfo",
    "TextFormatter",
    "Tracer",
    "configure_logging",
    "current_request",
    "current_request_id",
    "load_tracer",
    "new_request_id",
    "request_id_from",
]
