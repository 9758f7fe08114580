"""Anomaly alerts in the gateway: the streaming detectors of
:mod:`hotpath.observe._anomaly` fed from the request path (upstream latency and
errors per model and upstream, cache hits and spend per model), judged once a
second in the background; alerts go to the log, to metrics and to a webhook."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from hotpath._clock import Clock
from hotpath.gateway._config import GatewayConfig
from hotpath.gateway._metrics import MAX_LABELS, GatewayMetrics
from hotpath.observe._anomaly import Alert, AnomalyMonitor
from hotpath.observe._webhook import Webhook

__all__ = ["GatewayAnomalies"]

log = logging.getLogger("hotpath.observe")

_TICK = 1.0  # seconds between judgements (a window closes every 5 s)


class GatewayAnomalies:
    """The detectors of one gateway process (``[observe] anomalies``)."""

    def __init__(self, config: GatewayConfig, metrics: GatewayMetrics, clock: Clock) -> None:
        settings = config.observe
        self.metrics = metrics
        self.monitor: AnomalyMonitor | None = None
        if settings.anomalies:
            # Room for every series the request path can open, so none still in
            # use is evicted: model keys are bounded like metric labels (the
            # 200 first, then "other"), each with 5 series (latency, stream
            # latency, errors, hits, spend); each upstream has 3.
            room = 5 * (MAX_LABELS + 1) + 3 * len(config.upstreams)
            self.monitor = AnomalyMonitor(clock=clock, on_alert=self._on_alert, max_series=room)
        self._webhook: Webhook | None = None
        if settings.alert_webhook is not None:
            self._webhook = Webhook(
                settings.alert_webhook,
                on_failure=lambda: metrics.child(metrics.webhook_failures).inc(),
            )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.monitor is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._judge())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._webhook is not None:
            await self._webhook.aclose()

    async def _judge(self) -> None:
        assert self.monitor is not None
        while True:
            await asyncio.sleep(_TICK)
            try:
                self.monitor.tick()
            except Exception:
                log.exception("anomaly detectors failed to judge a window")

    # -- the request path: O(1), a few hundred ns each ----------------------------------

    def upstream(
        self, model: str, upstream: str, seconds: float, *, error: bool, stream: bool = False
    ) -> None:
        """One upstream try of ``model`` on ``upstream``: its latency and whether
        it failed. A stream's latency is its first byte's, a different quantity
        from a whole answer's time, so it goes to series of their own (keys
        ending in ``:stream``): a change in the share of streams is no shift."""
        monitor = self.monitor
        if monitor is None:
            return
        suffix = ":stream" if stream else ""
        for key in (self._model(model), f"upstream:{upstream}"):
            monitor.observe_outcome(key, error=error)
            if not error:
                monitor.observe_latency(key + suffix, seconds)

    def embeddings(self, model: str, upstream: str, seconds: float, *, error: bool) -> None:
        """One upstream try of an embeddings ``model``: its latency counts for the
        model only (on the upstream's series it would mix two distributions, and a
        change in the mix would read as a shift); whether it failed, for both."""
        monitor = self.monitor
        if monitor is None:
            return
        key = self._model(model)
        monitor.observe_outcome(key, error=error)
        monitor.observe_outcome(f"upstream:{upstream}", error=error)
        if not error:
            monitor.observe_latency(key, seconds)

    def cache(self, model: str, *, hit: bool) -> None:
        if self.monitor is not None:
            self.monitor.observe_cache(self._model(model), hit=hit)

    def spend(self, model: str, usd: float | None) -> None:
        if self.monitor is not None and usd:
            self.monitor.observe_spend(self._model(model), usd)

    def _model(self, model: str) -> str:
        """A model's key: its name, bounded as metric labels are (a client may
        send any number of model names through a ``*`` route)."""
        return "model:" + self.metrics.bounded(model)

    # -- alerts -------------------------------------------------------------------------

    def _on_alert(self, alert: Alert) -> None:
        metrics = self.metrics
        key = metrics.bounded(alert.key)
        raised = alert.kind == "raised"
        metrics.child(metrics.anomaly_active, alert.signal, key).set(1 if raised else 0)
        if raised:
            metrics.child(metrics.anomaly_alerts, alert.signal, key, alert.direction).inc()
            log.warning(
                "anomaly: %s of %s went %s: %.4g against a baseline of %.4g (score %.1f)",
                alert.signal,
                alert.key,
                alert.direction,
                alert.value,
                alert.baseline,
                alert.score,
            )
        else:
            log.info(
                "anomaly cleared: %s of %s is back near %.4g",
                alert.signal,
                alert.key,
                alert.baseline,
            )
        if self._webhook is not None:
            self._webhook.send(
                {
                    "event": f"anomaly.{alert.kind}",
                    "signal": alert.signal,
                    "key": alert.key,
                    "direction": alert.direction,
                    "value": alert.value,
                    "baseline": alert.baseline,
                    "score": alert.score,
                    "at": alert.at,
                }
            )
