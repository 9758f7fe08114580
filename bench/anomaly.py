"""Anomaly detection on simulated traffic: how soon real shifts are caught, how often
steady noise alarms, a series recorded from the mock upstream, and what the request
path pays.

Run: ``python -m bench.anomaly``; writes ``bench/results/anomaly.md``; takes ~1.5 min
on 2 cores (``--quick``: a sixth of the runs and one simulated day, printed only).

Everything but the recording runs on a :class:`~hotpath.ManualClock`: each simulated
second draws that second's observations, feeds them to one :class:`AnomalyMonitor`
per method (the same observations to each), advances the clock one second and ticks
every monitor -- as the gateway's 1 s background loop does. No real time passes.
Methods: the defaults (CUSUM), the zscore method (at the threshold that gives it the
same false-alarm rate), and the CUSUM without the autocorrelation discount.

*Traffic* (per key; ``rate`` observations per second of each signal, Poisson):
latency from the mock upstream's ``Latency.lognormal(0.8 s, sigma 0.5)``; errors at
1%; cache hits at 70%; a cost per request lognormal around $0.002 (sigma 0.8, as
prompt and answer lengths vary). Load noise on top, each an AR(1) process with a
30 s time constant: latency x exp(N(0, 0.05)), error rate x exp(N(0, 0.2)), hit rate
+ N(0, 0.02), cost and rate x exp(N(0, 0.1)) each. And 0.2% of requests are single
outliers 10-50x slower.

*Shifts* (after 300 s, plus 0-4 s so that windows are met at every phase): latency
x1.5, x2, x3; errors 1% -> 5%, 20%; hit rate 70% -> 40%; spend x3 (each call costs
3x). Each at 5, 20 and 50 observations/s, ``RUNS`` seeds each. Delay: from the shift
to the tick that raises the alert of that signal and direction; a run with no such
alert within ``HORIZON`` seconds (or with one before the shift) is a miss.

*Steady traffic* for false alarms: ``DAYS`` simulated days of all four signals, the
rate following a day from 5/s (midnight) to 50/s (noon), latency 25% higher at the
peak, the error rate 1% +-0.5%, the hit rate 70% +-5%, a 2-hour wave of +-10% on
latency and cost, the load noise and outliers above; every alert is false.

*Recorded*: ``MockUpstream`` with a lognormal ttft called over HTTP, then its ttft
doubled; the latencies measured are replayed in order on a ManualClock.

*Request path*: ``observe_*`` timed in batches (bench.timing) against a dict
increment of the same key, in interleaved rounds; and a tick that closes a window
over 1000 series.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp

from bench.timing import Figure, machine, time_sync
from hotpath._clock import ManualClock
from hotpath.observe._anomaly import Alert, AnomalyMonitor, DetectorSettings, Signal
from hotpath.providers.mock import Latency, MockConfig, MockUpstream

RESULTS = Path(__file__).parent / "results" / "anomaly.md"
QUICK = "--quick" in sys.argv
RUNS = 10 if QUICK else 60  # seeds per scenario and rate
DAYS = 1 if QUICK else 10  # simulated days of steady traffic (over all methods)
RATES = (5.0, 20.0, 50.0)
SHIFT_AT = 300.0  # seconds of steady traffic before the shift
HORIZON = 120.0  # seconds after the shift within which an alert counts
TARGET_DELAY = 30.0
TARGET_FALSE = 0.1  # false alarms per hour, per key (all four signals)
ROUNDS = 5
KEY = "model:gpt-4o-mini"
SIGNALS: tuple[Signal, ...] = ("latency", "error_rate", "hit_rate", "spend_rate")
DAY = 86400.0

# The defaults are the tuned CUSUM; the zscore row is that method at its best setting
# for < 0.1 false alarms per hour; the last row is the CUSUM without the discount for
# autocorrelated scores.
METHODS: dict[str, DetectorSettings] = {
    "cusum": DetectorSettings(),
    "zscore": DetectorSettings(method="zscore"),
    "cusum, not decorrelated": DetectorSettings(decorrelate=False),
}


@dataclass(frozen=True, slots=True)
class Traffic:
    """The steady traffic of one key, and what a scenario shifts."""

    rate: float = 20.0
    latency: Latency = field(default_factory=lambda: Latency.lognormal(0.8, 0.5))
    error_rate: float = 0.01
    hit_rate: float = 0.7
    cost_median: float = 0.002
    cost_sigma: float = 0.8
    outliers: float = 0.002
    # sd of the AR(1) load noise: log latency, log error rate, hit rate, log cost and rate
    jitter: tuple[float, float, float, float] = (0.05, 0.2, 0.02, 0.1)
    diurnal: bool = False


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    signal: Signal
    direction: str
    shifted: Callable[[Traffic], Traffic]


SCENARIOS = (
    Scenario("latency x1.5", "latency", "up", lambda t: _latency(t, 1.5)),
    Scenario("latency x2", "latency", "up", lambda t: _latency(t, 2.0)),
    Scenario("latency x3", "latency", "up", lambda t: _latency(t, 3.0)),
    Scenario("errors 1% -> 5%", "error_rate", "up", lambda t: replace(t, error_rate=0.05)),
    Scenario("errors 1% -> 20%", "error_rate", "up", lambda t: replace(t, error_rate=0.2)),
    Scenario("hit rate 70% -> 40%", "hit_rate", "down", lambda t: replace(t, hit_rate=0.4)),
    Scenario("spend x3", "spend_rate", "up", lambda t: replace(t, cost_median=3 * t.cost_median)),
)


def _latency(t: Traffic, factor: float) -> Traffic:
    median, sigma = t.latency.params
    return replace(t, latency=Latency.lognormal(median * factor, sigma))


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


class Source:
    """Draws each second's observations of one key's traffic."""

    TAU = 30.0  # seconds: time constant of the load noise

    def __init__(self, traffic: Traffic, seed: int) -> None:
        self.traffic = traffic
        self.rng = random.Random(seed)
        self.noise = [0.0, 0.0, 0.0, 0.0]
        self.rho = math.exp(-1 / self.TAU)

    def second(
        self, t: float, signals: tuple[Signal, ...]
    ) -> Iterator[tuple[Signal, float | bool]]:
        """The observations of second ``t``: (signal, value) pairs."""
        tr, rng, rho = self.traffic, self.rng, self.rho
        for i, sd in enumerate(tr.jitter):
            self.noise[i] = rho * self.noise[i] + math.sqrt(1 - rho * rho) * sd * rng.gauss(0, 1)
        lat_noise, err_noise, hit_noise, cost_noise = self.noise
        rate, lat_f, err_f, hit_d, cost_f = tr.rate, 1.0, 1.0, 0.0, 1.0
        if tr.diurnal:
            day = 0.5 - 0.5 * math.cos(2 * math.pi * t / DAY)  # 0 at midnight, 1 at noon
            wave = math.sin(2 * math.pi * t / 7200)
            rate = 5 + 45 * day
            lat_f = (1 + 0.25 * day) * (1 + 0.1 * wave)
            err_f = 1 + 0.5 * math.sin(2 * math.pi * t / DAY)
            hit_d = 0.05 * math.sin(2 * math.pi * (t / DAY + 0.3))
            cost_f = 1 + 0.1 * wave
        n = _poisson(rng, rate * math.exp(cost_noise))
        median, sigma = tr.latency.params
        mu = math.log(median * lat_f) + lat_noise
        p_err = min(1.0, tr.error_rate * err_f * math.exp(err_noise))
        p_hit = min(1.0, max(0.0, tr.hit_rate + hit_d + hit_noise))
        cost_mu = math.log(tr.cost_median * cost_f) + cost_noise
        gauss, random_ = rng.gauss, rng.random
        for _ in range(n):
            for signal in signals:
                if signal == "latency":
                    x = math.exp(mu + sigma * gauss(0, 1))
                    if random_() < tr.outliers:
                        x *= rng.uniform(10, 50)
                    yield signal, x
                elif signal == "error_rate":
                    yield signal, random_() < p_err
                elif signal == "hit_rate":
                    yield signal, random_() < p_hit
                else:
                    yield signal, math.exp(cost_mu + tr.cost_sigma * gauss(0, 1))


def _feed(monitor: AnomalyMonitor, signal: Signal, value: float | bool) -> None:
    if signal == "latency":
        monitor.observe_latency(KEY, value)
    elif signal == "error_rate":
        monitor.observe_outcome(KEY, error=bool(value))
    elif signal == "hit_rate":
        monitor.observe_cache(KEY, hit=bool(value))
    else:
        monitor.observe_spend(KEY, value)


def simulate(
    traffic: Traffic,
    seconds: float,
    seed: int,
    methods: dict[str, DetectorSettings],
    signals: tuple[Signal, ...],
    shift: tuple[float, Traffic] | None = None,
) -> dict[str, list[tuple[float, Alert]]]:
    """Run ``seconds`` of ``traffic`` (``shift``: from then on, other traffic) through
    one monitor per method; their alerts with the simulated second of each."""
    clock = ManualClock(start=0.0)
    monitors = {name: AnomalyMonitor(clock=clock, settings=s) for name, s in methods.items()}
    alerts: dict[str, list[tuple[float, Alert]]] = {name: [] for name in methods}
    source = Source(traffic, seed)
    t = 0.0
    while t < seconds:
        if shift is not None and t >= shift[0]:
            source.traffic, shift = shift[1], None
        for signal, value in source.second(t, signals):
            for monitor in monitors.values():
                _feed(monitor, signal, value)
        clock.advance(1.0)
        t += 1.0
        for name, monitor in monitors.items():
            alerts[name] += [(t, a) for a in monitor.tick()]
    return alerts


# -- detection ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Detection:
    scenario: str
    rate: float
    method: str
    delays: list[float]  # inf: missed
    early: int  # runs with a false alarm of that signal before the shift


def _detect_one(args: tuple[int, float, int]) -> dict[str, tuple[float, bool]]:
    index, rate, seed = args
    scenario = SCENARIOS[index]
    base = Traffic(rate=rate)
    at = SHIFT_AT + seed % 5
    alerts = simulate(
        base,
        at + HORIZON,
        seed,
        METHODS,
        (scenario.signal,),
        shift=(at, scenario.shifted(base)),
    )
    out = {}
    for name, found in alerts.items():
        raised = [
            t
            for t, a in found
            if a.kind == "raised"
            and a.signal == scenario.signal
            and a.direction == scenario.direction
        ]
        early = any(t <= at for t in raised)
        later = [t - at for t in raised if t > at]
        out[name] = (later[0] if later and not early else math.inf, early)
    return out


def detections(pool: ProcessPoolExecutor) -> list[Detection]:
    jobs = [(i, r, seed) for i in range(len(SCENARIOS)) for r in RATES for seed in range(RUNS)]
    results = list(pool.map(_detect_one, jobs, chunksize=4))
    rows = []
    for i, s in enumerate(SCENARIOS):
        for r in RATES:
            mine = [
                res for (ji, jr, _), res in zip(jobs, results, strict=True) if (ji, jr) == (i, r)
            ]
            for name in METHODS:
                delays = [m[name][0] for m in mine]
                early = sum(m[name][1] for m in mine)
                rows.append(Detection(s.name, r, name, delays, early))
    return rows


# -- false alarms ------------------------------------------------------------------------


def _steady_one(seed: int) -> dict[str, list[tuple[float, Alert]]]:
    return simulate(Traffic(diurnal=True), DAY, 1000 + seed, METHODS, SIGNALS)


def false_alarms(pool: ProcessPoolExecutor) -> dict[str, list[tuple[float, Alert]]]:
    out: dict[str, list[tuple[float, Alert]]] = {name: [] for name in METHODS}
    for found in pool.map(_steady_one, range(DAYS)):
        for name, alerts in found.items():
            out[name] += [(t, a) for t, a in alerts if a.kind == "raised"]
    return out


# -- a series recorded from the mock upstream ----------------------------------------------

RECORD_RATE = 20.0  # replayed observations per second
RECORD_BASE = 6000  # calls at the mock's first latency (300 s when replayed)
RECORD_SLOW = 1200  # calls after its ttft doubled (60 s)
RECORD_TTFT = (0.05, 0.4)  # lognormal median seconds, sigma
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hi."}]}


async def _record(url: str, calls: int, concurrency: int = 32) -> list[float]:
    """Latencies of ``calls`` chat completions, ``concurrency`` at a time, in the
    order they finished."""
    out: list[float] = []
    todo = iter(range(calls))
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            for _ in todo:
                t0 = time.perf_counter()
                async with session.post(f"{url}/chat/completions", json=BODY) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"the mock answered {resp.status}")
                out.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out


def record() -> tuple[list[float], list[float]]:
    """A real latency series from the mock upstream over HTTP: its ttft lognormal,
    then doubled (``MockApp.set_config``, as ``POST /mock/config`` does)."""
    median, sigma = RECORD_TTFT
    config = MockConfig(ttft=Latency.lognormal(median, sigma), seed=1)
    with MockUpstream(config) as mock:
        base = asyncio.run(_record(mock.url, RECORD_BASE))
        mock.app.set_config(replace(config, ttft=Latency.lognormal(2 * median, sigma)))
        slow = asyncio.run(_record(mock.url, RECORD_SLOW))
    return base, slow


def _replay_one(args: tuple[list[float], int, int]) -> dict[str, tuple[float, int]]:
    """The recorded series (its first ``shift`` values normal), replayed in order at
    Poisson ``RECORD_RATE`` per second; per method: the delay to the latency alert
    after the shift (inf: none within HORIZON) and the alerts before it."""
    series, shift, seed = args
    clock = ManualClock(start=0.0)
    monitors = {name: AnomalyMonitor(clock=clock, settings=s) for name, s in METHODS.items()}
    rng = random.Random(seed)
    out = dict.fromkeys(METHODS, (math.inf, 0))
    i, shifted_at, t = 0, math.inf, 0.0
    while i < len(series) and t < shifted_at + HORIZON:
        for _ in range(_poisson(rng, RECORD_RATE)):
            if i == shift:
                shifted_at = t
            if i < len(series):
                for monitor in monitors.values():
                    monitor.observe_latency(KEY, series[i])
                i += 1
        clock.advance(1.0)
        t += 1.0
        for name, monitor in monitors.items():
            for alert in monitor.tick():
                if alert.kind != "raised":
                    continue
                delay, early = out[name]
                if t <= shifted_at:
                    out[name] = (delay, early + 1)
                elif math.isinf(delay):
                    out[name] = (t - shifted_at, early)
    return out


def recorded(pool: ProcessPoolExecutor) -> tuple[dict[str, list[tuple[float, int]]], str]:
    base, slow = record()
    jobs = [(base + slow, len(base), seed) for seed in range(RUNS)]
    runs: dict[str, list[tuple[float, int]]] = {name: [] for name in METHODS}
    for res in pool.map(_replay_one, jobs):
        for name, found in res.items():
            runs[name].append(found)
    b, w = statistics.median(base), statistics.median(slow)
    p99b, p99w = 1000 * _pct(base, 0.99), 1000 * _pct(slow, 0.99)
    what = (
        f"{len(base)} + {len(slow)} calls, median {1000 * b:.0f} ms then {1000 * w:.0f} ms "
        f"(x{w / b:.2f}); p99 {p99b:.0f} ms then {p99w:.0f} ms"
    )
    return runs, what


# -- the request path --------------------------------------------------------------------


def request_path() -> list[tuple[str, Figure, float]]:
    monitor = AnomalyMonitor(clock=ManualClock())
    counts: dict[str, int] = {}
    key = KEY

    def dict_inc() -> None:
        counts[key] = counts.get(key, 0) + 1

    ops: dict[str, Callable[[], object]] = {
        "dict increment of the key (baseline)": dict_inc,
        "observe_latency": lambda: monitor.observe_latency(key, 0.42),
        "observe_outcome": lambda: monitor.observe_outcome(key, error=False),
        "observe_cache": lambda: monitor.observe_cache(key, hit=True),
        "observe_spend": lambda: monitor.observe_spend(key, 0.0021),
    }
    runs: dict[str, list[Figure]] = {name: [] for name in ops}
    for _ in range(ROUNDS):
        for name, fn in ops.items():
            runs[name].append(time_sync(fn))
    base = next(iter(ops))
    out = []
    for name, figs in runs.items():
        ratio = statistics.median(f.ratio(b) for f, b in zip(figs, runs[base], strict=True))
        fig = Figure(
            statistics.median(f.median_ns for f in figs), statistics.median(f.p99_ns for f in figs)
        )
        out.append((name, fig, ratio))
    return out


def tick_cost(series: int = 1000) -> float:
    """Microseconds per series of a tick that closes a window (warm detectors)."""
    clock = ManualClock()
    monitor = AnomalyMonitor(clock=clock, max_series=4 * series)
    keys = [f"model:m{i}" for i in range(series // 4)]
    rng = random.Random(7)
    costs = []
    for w in range(40):
        for key in keys:
            for _ in range(12):
                monitor.observe_latency(key, rng.lognormvariate(-0.2, 0.5))
                monitor.observe_outcome(key, error=rng.random() < 0.01)
                monitor.observe_cache(key, hit=rng.random() < 0.7)
                monitor.observe_spend(key, rng.lognormvariate(-6, 0.8))
        clock.advance(5.0)
        t0 = time.perf_counter_ns()
        monitor.tick()
        if w >= 20:
            costs.append((time.perf_counter_ns() - t0) / 1000 / series)
    return statistics.median(costs)


# -- report ------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def _s(value: float) -> str:
    return f"> {HORIZON:.0f}" if math.isinf(value) else f"{value:.0f}"


def report(
    rows: list[Detection],
    steady: dict[str, list[tuple[float, Alert]]],
    replays: tuple[dict[str, list[tuple[float, int]]], str],
    path: list[tuple[str, Figure, float]],
    per_series_us: float,
    seconds: float,
) -> str:
    hours = DAYS * DAY / 3600
    lines = [
        "# Anomaly detection",
        "",
        f"`python -m bench.anomaly` on {time.strftime('%Y-%m-%d')}; {machine()}; "
        f"{seconds:.0f} s. Simulated on a ManualClock (see the script's docstring): "
        "5 s windows, a tick every simulated second, every setting at its default "
        "except `method`.",
        "",
        "### Detection delay",
        "",
        f"Seconds from the shift to the tick that raised the alert, over {RUNS} seeded "
        f"runs per row (shift after {SHIFT_AT:.0f} s of steady traffic); detected: share "
        f"of runs raising it within {HORIZON:.0f} s (an alert of that signal before the "
        "shift counts as a miss). Rate: observations per second of the signal.",
        "",
        "| shift | rate /s | method | median s | p95 s | detected |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for row in rows:
        caught = sum(not math.isinf(d) for d in row.delays)
        lines.append(
            f"| {row.scenario} | {row.rate:.0f} | {row.method} | "
            f"{_s(statistics.median(row.delays))} | {_s(_pct(row.delays, 0.95))} | "
            f"{100 * caught / len(row.delays):.0f}% |"
        )
    lines += [
        "",
        "### False alarms on steady traffic",
        "",
        f"{hours:.0f} simulated hours of one key's four signals (5 to 50 observations/s "
        "over the day, drifting levels, load noise, single slow outliers). Every alert "
        "raised is false.",
        "",
        "| method | latency | error rate | hit rate | spend rate | all four, per hour |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, alerts in steady.items():
        by = {s: sum(a.signal == s for _, a in alerts) for s in SIGNALS}
        lines.append(
            f"| {name} | {by['latency']} | {by['error_rate']} | {by['hit_rate']} | "
            f"{by['spend_rate']} | {len(alerts) / hours:.3f} |"
        )
    runs, what = replays
    median, sigma = RECORD_TTFT
    lines += [
        "",
        "### A latency series recorded from the mock upstream",
        "",
        f"`MockUpstream(MockConfig(ttft=Latency.lognormal({1000 * median:.0f} ms, {sigma})))` "
        "called over HTTP (aiohttp, 32 at a time) on this machine, then its ttft doubled "
        f"(`MockApp.set_config`): {what}. The recorded latencies are replayed in order at "
        f"Poisson {RECORD_RATE:.0f}/s on a ManualClock, {RUNS} seeds (the arrivals differ, "
        "the series does not).",
        "",
        "| method | median s | p95 s | detected | alerts before the shift |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, found in runs.items():
        delays = [d for d, _ in found]
        hits = sum(not math.isinf(d) for d in delays)
        lines.append(
            f"| {name} | {_s(statistics.median(delays))} | {_s(_pct(delays, 0.95))} | "
            f"{100 * hits / len(delays):.0f}% | {sum(e for _, e in found)} |"
        )
    lines += [
        "",
        "### The request path",
        "",
        "ns per call, timed in batches (`bench.timing`), median over "
        f"{ROUNDS} interleaved rounds; the ratio is the median of per-round ratios to a "
        f"dict increment of the same key. A tick that closes a window costs "
        f"{per_series_us:.1f} us per series (1000 series, warm).",
        "",
        "| operation | median ns | p99 ns | ratio to baseline |",
        "|---|---:|---:|---:|",
    ]
    for name, fig, ratio in path:
        lines.append(f"| {name} | {fig.median_ns:.0f} | {fig.p99_ns:.0f} | {ratio:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        replays = recorded(pool)
        steady = false_alarms(pool)
        rows = detections(pool)
    path = request_path()
    per_series = tick_cost()
    text = report(rows, steady, replays, path, per_series, time.perf_counter() - started)
    if not QUICK:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
