"""Folding shots into histograms and per-second rows as they complete.

A :class:`Recorder` is the loops' ``on_shot`` callback. Its memory does not grow
with the number of requests: HDR histograms for the whole run (3 significant
figures) and one small set per second of the run (2 significant figures, see
:mod:`hotpath.loadgen._histogram`), plus the distinct request texts seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hotpath.loadgen._histogram import LatencyHistogram
from hotpath.loadgen._loops import Shot
from hotpath.loadgen._results import Percentiles, Second, TargetResult

__all__ = ["Recorder"]


@dataclass(slots=True)
class _Window:
    latency: LatencyHistogram = field(default_factory=lambda: LatencyHistogram(2))
    ttft: LatencyHistogram | None = None  # made by the second's first stream
    sent: int = 0
    ok: int = 0
    errors: int = 0
    completed: int = 0
    hits: int = 0
    lookups: int = 0


class Recorder:
    """Collects the shots of one run that started at clock time ``start`` with a
    warm-up of ``warmup`` seconds; :meth:`result` summarizes them."""

    def __init__(self, start: float, warmup: float) -> None:
        self.measure_from = start + warmup
        self.latency = LatencyHistogram()
        self.ttft = LatencyHistogram()
        self.lag = LatencyHistogram()
        self.sent = self.ok = self.warmup_requests = self.coalesced = 0
        self.prompt_tokens = self.completion_tokens = 0
        self.errors: dict[str, int] = {}
        self.cache: dict[str, int] = {}
        self.texts: set[str] = set()
        self.meanings: set[str] = set()
        self.last_end = self.measure_from  # of the last answer (failures left out)
        self.first_intended: float | None = None
        self.last_intended = self.measure_from
        self._windows: dict[int, _Window] = {}

    def _window(self, t: float) -> _Window:
        second = max(0, int(t - self.measure_from))
        window = self._windows.get(second)
        if window is None:
            window = self._windows[second] = _Window()
        return window

    def __call__(self, shot: Shot) -> None:
        if not shot.measured:
            self.warmup_requests += 1
            return
        out = shot.outcome
        self.sent += 1
        self.lag.record(shot.lag)
        self.texts.add(shot.spec.key)
        self.meanings.add(shot.spec.meaning)
        if self.first_intended is None or shot.intended < self.first_intended:
            self.first_intended = shot.intended
        self.last_intended = max(self.last_intended, shot.intended)
        window = self._window(shot.intended)
        window.sent += 1
        if out.error is not None:
            self.errors[out.error] = self.errors.get(out.error, 0) + 1
            window.errors += 1
            return
        self.ok += 1
        self.last_end = max(self.last_end, out.end)
        window.ok += 1
        self._window(out.end).completed += 1
        latency = shot.latency
        self.latency.record(latency)
        window.latency.record(latency)
        ttft = shot.ttft
        if ttft is not None:
            self.ttft.record(ttft)
            if window.ttft is None:
                window.ttft = LatencyHistogram(2)
            window.ttft.record(ttft)
        self.prompt_tokens += out.prompt_tokens
        self.completion_tokens += out.completion_tokens
        self.coalesced += out.coalesced
        if out.cache is not None:
            label = f"hit:{out.tier or '?'}" if out.cache == "hit" else out.cache
            self.cache[label] = self.cache.get(label, 0) + 1
            window.lookups += 1
            window.hits += out.cache == "hit"

    def series(self) -> tuple[Second, ...]:
        rows = []
        for t in range(max(self._windows, default=-1) + 1):
            w = self._windows.get(t)
            if w is None:  # a second in which nothing was sent or answered
                rows.append(
                    Second(
                        t=t,
                        sent=0,
                        ok=0,
                        errors=0,
                        completed=0,
                        p50=None,
                        p90=None,
                        p99=None,
                        max=None,
                        ttft_p50=None,
                        ttft_p99=None,
                        hits=0,
                        lookups=0,
                    )
                )
                continue
            lat = w.latency.percentiles((0.5, 0.9, 0.99)) if w.latency.count else {}
            ttft = w.ttft.percentiles((0.5, 0.99)) if w.ttft is not None else {}
            rows.append(
                Second(
                    t=t,
                    sent=w.sent,
                    ok=w.ok,
                    errors=w.errors,
                    completed=w.completed,
                    p50=lat.get(0.5),
                    p90=lat.get(0.9),
                    p99=lat.get(0.99),
                    max=w.latency.max if w.latency.count else None,
                    ttft_p50=ttft.get(0.5),
                    ttft_p99=ttft.get(0.99),
                    hits=w.hits,
                    lookups=w.lookups,
                )
            )
        return tuple(rows)

    def result(
        self,
        *,
        name: str,
        url: str,
        load: str,
        workload: str,
        open_loop: bool,
    ) -> TargetResult:
        """The summary. Throughput is answers over the time to the last answer (a
        request that timed out does not stretch it); the open loop's offered rate
        is the number of gaps between measured send times over their span, so a
        schedule cut short by a request limit is measured as it ran."""
        window = max(1e-9, self.last_end - self.measure_from)
        first = self.first_intended
        span = self.last_intended - first if first is not None else 0.0
        offered = (self.sent - 1) / span if open_loop and span > 0 else None
        return TargetResult(
            name=name,
            url=url,
            load=load,
            workload=workload,
            window=window,
            sent=self.sent,
            ok=self.ok,
            warmup_requests=self.warmup_requests,
            errors=dict(sorted(self.errors.items())),
            offered_rate=offered,
            throughput=self.ok / window,
            latency=Percentiles.of(self.latency) if self.latency.count else None,
            ttft=Percentiles.of(self.ttft) if self.ttft.count else None,
            lag=Percentiles.of(self.lag) if open_loop else None,
            cache=dict(sorted(self.cache.items())),
            coalesced=self.coalesced,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            distinct_texts=len(self.texts),
            distinct_meanings=len(self.meanings),
            series=self.series(),
        )
