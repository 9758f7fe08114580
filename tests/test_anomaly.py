"""Anomaly detection: detectors fed seeded synthetic traffic on a ManualClock."""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass

import pytest

from hotpath._clock import ManualClock
from hotpath._errors import ConfigError
from hotpath.observe._anomaly import (
    Alert,
    AnomalyMonitor,
    Detector,
    DetectorSettings,
    Signal,
    binomial_z,
)

KEY = "model:gpt-4o-mini"
SIGNALS: tuple[Signal, ...] = ("latency", "error_rate", "hit_rate", "spend_rate")
LAT: tuple[Signal, ...] = ("latency",)
ERR: tuple[Signal, ...] = ("error_rate",)
HIT: tuple[Signal, ...] = ("hit_rate",)
SPEND: tuple[Signal, ...] = ("spend_rate",)


@dataclass(frozen=True)
class Traffic:
    """``rate`` observations per second of each signal in ``signals``."""

    rate: float = 20.0
    latency: float = 0.8  # median seconds (lognormal)
    sigma: float = 0.5
    error_rate: float = 0.01
    hit_rate: float = 0.7
    cost: float = 0.002  # median USD (lognormal, sigma 0.8)
    outliers: float = 0.0  # share of requests 10-50x slower
    wobble: float = 0.0  # sd of an AR(1) load factor on latency (log), 30 s time constant
    signals: tuple[Signal, ...] = SIGNALS


class Sim:
    """A monitor, its ManualClock and a seeded source of traffic."""

    def __init__(self, seed: int = 1, settings: DetectorSettings | None = None, **kw: object):
        self.clock = ManualClock(start=1_700_000_000.0)
        self.monitor = AnomalyMonitor(clock=self.clock, settings=settings, **kw)  # type: ignore[arg-type]
        self.rng = random.Random(seed)
        self.alerts: list[tuple[float, Alert]] = []
        self.load = 0.0

    @property
    def t(self) -> float:
        return self.clock.monotonic()

    def _poisson(self, mean: float) -> int:
        limit, k, p = math.exp(-mean), 0, self.rng.random()
        while p > limit:
            k += 1
            p *= self.rng.random()
        return k

    def run(self, seconds: float, traffic: Traffic, key: str = KEY) -> list[tuple[float, Alert]]:
        """``seconds`` of traffic, a tick after each second; the alerts of this run."""
        rng, m = self.rng, self.monitor
        out: list[tuple[float, Alert]] = []
        rho = math.exp(-1 / 30)
        for _ in range(round(seconds)):
            self.load = rho * self.load + math.sqrt(1 - rho * rho) * rng.gauss(0, traffic.wobble)
            for _ in range(self._poisson(traffic.rate)):
                if "latency" in traffic.signals:
                    median = traffic.latency * math.exp(self.load)
                    x = rng.lognormvariate(math.log(median), traffic.sigma)
                    if rng.random() < traffic.outliers:
                        x *= rng.uniform(10, 50)
                    m.observe_latency(key, x)
                if "error_rate" in traffic.signals:
                    m.observe_outcome(key, error=rng.random() < traffic.error_rate)
                if "hit_rate" in traffic.signals:
                    m.observe_cache(key, hit=rng.random() < traffic.hit_rate)
                if "spend_rate" in traffic.signals:
                    m.observe_spend(key, rng.lognormvariate(math.log(traffic.cost), 0.8))
            self.clock.advance(1.0)
            out += [(self.t, a) for a in m.tick()]
        self.alerts += out
        return out


def raised(alerts: list[tuple[float, Alert]], signal: str) -> list[tuple[float, Alert]]:
    return [(t, a) for t, a in alerts if a.kind == "raised" and a.signal == signal]


# -- detection ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_latency_doubling_is_raised_within_30_s_at_5_requests_per_second(seed: int) -> None:
    sim = Sim(seed)
    base = Traffic(rate=5, signals=LAT)
    assert sim.run(300, base) == []
    shift = sim.t
    found = raised(sim.run(60, Traffic(rate=5, latency=1.6, signals=LAT)), "latency")
    assert found, "no latency alert"
    at, alert = found[0]
    assert at - shift <= 30
    assert alert.direction == "up"
    assert alert.key == KEY
    assert alert.value > 1.3 * alert.baseline
    assert alert.baseline == pytest.approx(0.8, rel=0.15)
    assert alert.at == sim.clock.now() - (sim.t - at)
    assert sim.monitor.active() == [alert]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_error_rate_jump_is_raised_within_30_s(seed: int) -> None:
    sim = Sim(seed)
    assert sim.run(300, Traffic(rate=50, signals=ERR)) == []
    shift = sim.t
    burst = Traffic(rate=50, error_rate=0.05, signals=ERR)
    found = raised(sim.run(60, burst), "error_rate")
    assert found, "no error-rate alert"
    assert found[0][0] - shift <= 30
    assert found[0][1].direction == "up"
    assert found[0][1].baseline < 0.02


def test_error_burst_is_raised_within_30_s_at_5_requests_per_second() -> None:
    sim = Sim(4)
    assert sim.run(300, Traffic(rate=5, signals=ERR)) == []
    shift = sim.t
    found = raised(sim.run(60, Traffic(rate=5, error_rate=0.2, signals=ERR)), "error_rate")
    assert found, "no error-rate alert"
    assert found[0][0] - shift <= 30


def test_hit_rate_drop_is_raised_down() -> None:
    sim = Sim(5)
    assert sim.run(300, Traffic(rate=20, signals=HIT)) == []
    shift = sim.t
    found = raised(sim.run(60, Traffic(rate=20, hit_rate=0.4, signals=HIT)), "hit_rate")
    assert found, "no hit-rate alert"
    at, alert = found[0]
    assert at - shift <= 30
    assert alert.direction == "down"
    assert alert.value < alert.baseline


def test_spend_rate_jump_is_raised() -> None:
    sim = Sim(6)
    assert sim.run(300, Traffic(rate=20, signals=SPEND)) == []
    shift = sim.t
    found = raised(sim.run(90, Traffic(rate=20, cost=0.006, signals=SPEND)), "spend_rate")
    assert found, "no spend alert"
    at, alert = found[0]
    assert at - shift <= 60
    # USD per second: 20 requests/s at a mean cost of 0.002 * exp(0.32)
    assert alert.baseline == pytest.approx(20 * 0.002 * math.exp(0.32), rel=0.3)


# -- silence ----------------------------------------------------------------------------


def test_steady_noise_with_outliers_stays_quiet_for_hours() -> None:
    sim = Sim(7)
    assert sim.run(3 * 3600, Traffic(rate=10, outliers=0.005)) == []
    assert sim.monitor.stats().windows == 3 * 3600 // 5


def test_slow_load_drift_does_not_alarm_once_decorrelated() -> None:
    """Latency drifting +-7% over tens of seconds: correlated windows, no shift."""
    wobbly = Traffic(rate=50, wobble=0.07, signals=LAT)
    assert Sim(18).run(2 * 3600, wobbly) == []
    naive = Sim(18, DetectorSettings(decorrelate=False)).run(2 * 3600, wobbly)
    assert raised(naive, "latency")


def test_the_zscore_method_raises_after_windows_in_a_row() -> None:
    sim = Sim(19, DetectorSettings(method="zscore", z_threshold=3.0, raise_after=2))
    sim.run(300, Traffic(rate=20, signals=LAT))
    shift = sim.t
    found = raised(sim.run(60, Traffic(rate=20, latency=3.0, signals=LAT)), "latency")
    assert found
    at, alert = found[0]
    assert at - shift <= 15  # the second full window
    assert alert.score > 3.0  # the window's score, not a sum


def test_a_latency_drop_is_not_watched_by_default() -> None:
    sim = Sim(8)
    sim.run(300, Traffic(rate=20, signals=LAT))
    assert sim.run(120, Traffic(rate=20, latency=0.2, signals=LAT)) == []


def test_a_watched_latency_drop_is_raised_down() -> None:
    sim = Sim(8, DetectorSettings(watch=("latency:up", "latency:down")))
    sim.run(300, Traffic(rate=20, signals=LAT))
    found = raised(sim.run(60, Traffic(rate=20, latency=0.2, signals=LAT)), "latency")
    assert [a.direction for _, a in found] == ["down"]


# -- hysteresis, warm-up, acceptance --------------------------------------------------------


def test_a_shift_raises_once_and_its_end_clears_once() -> None:
    sim = Sim(9)
    sim.run(300, Traffic(rate=20, signals=LAT))
    during = sim.run(120, Traffic(rate=20, latency=2.4, signals=LAT))
    after = sim.run(300, Traffic(rate=20, signals=LAT))
    assert [a.kind for _, a in during] == ["raised"]
    assert [a.kind for _, a in after] == ["cleared"]
    cleared = after[0][1]
    assert cleared.direction == "up"
    assert cleared.value == pytest.approx(0.8, rel=0.3)
    assert cleared.baseline == during[0][1].baseline  # frozen while it stood
    assert after[0][0] - 420 <= 30  # 3 in-band windows after the shift ended
    assert sim.monitor.active() == []
    stats = sim.monitor.stats()
    assert (stats.raised, stats.cleared, stats.active) == (1, 1, 0)


def test_nothing_is_raised_during_warm_up() -> None:
    settings = DetectorSettings(warmup=24)
    sim = Sim(10, settings)
    sim.run(30, Traffic(rate=20, signals=LAT))
    # a tenfold jump 30 s in: the warm-up (24 windows = 120 s) only learns
    assert sim.run(90, Traffic(rate=20, latency=8.0, signals=LAT)) == []
    detector = sim.monitor.detector("latency", KEY)
    assert detector is not None
    assert detector.warm


def test_a_detector_is_cold_until_its_warm_up_windows_are_judged() -> None:
    sim = Sim(11, DetectorSettings(warmup=4))
    sim.run(15, Traffic(rate=20, signals=LAT))
    detector = sim.monitor.detector("latency", KEY)
    assert detector is not None
    assert not detector.warm
    sim.run(5, Traffic(rate=20, signals=LAT))
    assert detector.warm


def test_a_lasting_shift_becomes_the_new_normal_after_accept_after() -> None:
    sim = Sim(12, DetectorSettings(accept_after=600))
    sim.run(300, Traffic(rate=20, signals=LAT))
    slow = Traffic(rate=20, latency=2.0, signals=LAT)
    alerts = sim.run(900, slow)
    assert [a.kind for _, a in alerts] == ["raised", "cleared"]
    (raised_at, _), (cleared_at, cleared) = alerts
    assert cleared_at - raised_at == pytest.approx(600, abs=10)
    assert cleared.baseline == pytest.approx(2.0, rel=0.2)  # the new level
    assert sim.run(600, slow) == []  # learnt afresh: no new alert
    detector = sim.monitor.detector("latency", KEY)
    assert detector is not None
    assert detector.baseline == pytest.approx(2.0, rel=0.15)


def test_the_baseline_follows_slow_drift() -> None:
    sim = Sim(13)
    alerts: list[tuple[float, Alert]] = []
    for step in range(60):  # +50% over an hour, in one-minute steps
        alerts += sim.run(60, Traffic(rate=20, latency=0.8 * (1 + step / 120), signals=LAT))
    assert alerts == []
    detector = sim.monitor.detector("latency", KEY)
    assert detector is not None
    assert detector.baseline == pytest.approx(0.8 * 1.49, rel=0.1)


# -- guards ---------------------------------------------------------------------------------


def test_sparse_traffic_does_not_alarm() -> None:
    sim = Sim(14)
    sim.run(300, Traffic(rate=20, signals=ERR))
    # then a request every 10 s, every one failing: 3 per 30 s, never min_count
    sparse = Traffic(rate=0.1, error_rate=1.0, signals=ERR)
    assert sim.run(1800, sparse) == []


def test_a_sparse_window_is_carried_into_the_next() -> None:
    detector = Detector("error_rate", KEY, DetectorSettings(min_count=10, max_merge=3))
    for _ in range(6):
        detector.add(0.0)
    assert detector.close(5.0, 0.0) is None
    assert detector.sums.count == 6  # carried over
    for _ in range(6):
        detector.add(0.0)
    detector.close(5.0, 0.0)
    assert detector.sums.count == 0  # 12: judged
    assert detector.level == 0.0


def test_a_window_too_sparse_for_too_long_is_dropped() -> None:
    detector = Detector("error_rate", KEY, DetectorSettings(min_count=10, max_merge=3))
    for _ in range(3):
        detector.add(1.0)
        detector.close(5.0, 0.0)
    assert detector.sums.count == 0
    assert math.isnan(detector.level)


def test_one_error_in_three_requests_scores_as_the_binomial_tail_says() -> None:
    z = binomial_z(1, 3, 0.01)
    assert z == pytest.approx(2.17, abs=0.01)  # mid-p: P(X > 1) + P(X = 1) / 2 = 0.015
    normal = (1 - 3 * 0.01) / math.sqrt(3 * 0.01 * 0.99)
    assert normal > 5.5
    assert binomial_z(0, 3, 0.01) < 0


def test_binomial_z_meets_the_normal_approximation_at_large_counts() -> None:
    assert binomial_z(130, 1000, 0.1) == pytest.approx(30 / math.sqrt(90))
    # exact below n p q = 20 (here 18), and close to the approximation there
    assert binomial_z(30, 200, 0.1) == pytest.approx(10 / math.sqrt(18), abs=0.2)
    assert binomial_z(10, 200, 0.1) == pytest.approx(-10 / math.sqrt(18), abs=0.2)


def test_latency_ignores_nan_and_negative_and_clamps_extremes() -> None:
    clock = ManualClock()
    monitor = AnomalyMonitor(clock=clock)
    for value in (math.nan, -1.0, -math.inf):
        monitor.observe_latency(KEY, value)
        monitor.observe_spend(KEY, value)
    monitor.observe_latency(KEY, 0.0)
    monitor.observe_latency(KEY, math.inf)
    detector = monitor.detector("latency", KEY)
    assert detector is not None
    assert detector.sums.count == 2
    assert detector.sums.total == pytest.approx(math.log(1e-6) + math.log(1e6))
    spend = monitor.detector("spend_rate", KEY)
    assert spend is not None
    assert spend.sums.count == 0


# -- many series ----------------------------------------------------------------------------


def test_series_are_bounded_and_the_oldest_is_evicted() -> None:
    clock = ManualClock()
    monitor = AnomalyMonitor(clock=clock, max_series=3)
    for key in ("a", "b", "c"):
        monitor.observe_latency(key, 0.5)
    monitor.observe_outcome("d", error=False)
    assert monitor.detector("latency", "a") is None
    assert monitor.detector("error_rate", "d") is not None
    assert monitor.stats().series == 3
    assert monitor.stats().evicted == 1
    monitor.observe_latency("a", 0.5)  # a new series again: evicts b
    assert monitor.detector("latency", "b") is None


def test_eviction_spares_the_series_fed_most_recently() -> None:
    clock = ManualClock()
    monitor = AnomalyMonitor(clock=clock, max_series=3)
    for key in ("a", "b", "c"):
        monitor.observe_latency(key, 0.5)
    clock.advance(5.0)
    monitor.tick()
    monitor.observe_latency("a", 0.5)  # a is fed in the next window: b is now the oldest
    clock.advance(5.0)
    monitor.tick()
    monitor.observe_latency("d", 0.5)
    assert monitor.detector("latency", "a") is not None
    assert monitor.detector("latency", "b") is None


def test_an_evicted_alert_is_reported_cleared() -> None:
    sim = Sim(15, max_series=2)
    sim.run(300, Traffic(rate=20, signals=LAT))
    found = raised(sim.run(60, Traffic(rate=20, latency=4.0, signals=LAT)), "latency")
    assert found
    sim.monitor.observe_latency("model:other", 0.5)
    sim.monitor.observe_latency("model:third", 0.5)  # evicts the alerting series
    cleared = sim.monitor.tick()
    assert [(a.kind, a.key) for a in cleared] == [("cleared", KEY)]
    assert sim.monitor.active() == []


def test_keys_are_separate_series() -> None:
    sim = Sim(16)
    for _ in range(60):
        sim.run(5, Traffic(rate=20, signals=LAT), key="upstream:a")
    alerts = []
    for _ in range(12):
        alerts += sim.run(5, Traffic(rate=20, latency=3.0, signals=LAT), key="upstream:b")
    assert alerts == []  # b is new: still warming up, and a saw nothing new
    assert sim.monitor.stats().series == 2


# -- the hook, late ticks, validation -----------------------------------------------------------


def test_on_alert_gets_each_alert_and_its_failure_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[Alert] = []

    def hook(alert: Alert) -> None:
        seen.append(alert)
        raise RuntimeError("hook bug")

    sim = Sim(17, on_alert=hook)
    sim.run(300, Traffic(rate=20, signals=LAT))
    with caplog.at_level(logging.ERROR, logger="hotpath.observe"):
        alerts = sim.run(60, Traffic(rate=20, latency=4.0, signals=LAT))
    assert [a for _, a in alerts] == seen
    assert seen
    assert "on_alert hook failed" in caplog.text


def test_a_late_tick_closes_one_longer_window() -> None:
    clock = ManualClock()
    monitor = AnomalyMonitor(clock=clock)
    monitor.observe_spend(KEY, 1.0)
    clock.advance(2.0)
    assert monitor.tick() == []
    assert monitor.stats().windows == 0
    clock.advance(13.0)
    monitor.tick()
    assert monitor.stats().windows == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "ewma"}, "DetectorSettings.method must be one of"),
        (
            {"cusum_threshold": -1.0},
            "DetectorSettings.cusum_threshold must be a positive number, got -1.0",
        ),
        (
            {"cusum_slack": math.nan},
            "DetectorSettings.cusum_slack must be a number >= 0, got float nan",
        ),
        ({"warmup": 1}, "DetectorSettings.warmup must be an int >= 2, got 1"),
        ({"min_count": 2.5}, "DetectorSettings.min_count must be an int >= 1, got 2.5"),
        ({"alpha": 1.0}, "DetectorSettings.alpha must be in (0, 1), got 1.0"),
        ({"accept_after": 0}, "DetectorSettings.accept_after must be a positive number, got 0"),
        ({"decorrelate": "yes"}, "DetectorSettings.decorrelate must be a bool, got 'yes'"),
        ({"watch": ["latency:up"]}, "DetectorSettings.watch must be a tuple"),
        ({"watch": ("latency:sideways",)}, "got 'latency:sideways'"),
        ({"watch": ("qps:up",)}, "got 'qps:up'"),
    ],
)
def test_bad_settings_name_the_argument_and_the_value(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        DetectorSettings(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 0}, "window must be a positive number, got 0"),
        ({"window": "5s"}, "window must be a positive number, got str '5s'"),
        ({"max_series": 0}, "max_series must be an int >= 1, got 0"),
        (
            {"settings": {"method": "cusum"}},
            "settings must be a DetectorSettings, got {'method': 'cusum'}",
        ),
        ({"on_alert": "print"}, "on_alert must be callable, got 'print'"),
    ],
)
def test_bad_monitor_arguments_name_the_argument_and_the_value(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        AnomalyMonitor(**kwargs)  # type: ignore[arg-type]


def test_bad_detector_arguments_and_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"signal must be one of .*, got 'qps'"):
        Detector("qps", KEY)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="key must be a non-empty string, got ''"):
        AnomalyMonitor(clock=ManualClock()).observe_latency("", 0.1)


def test_reprs_say_what_they_hold() -> None:
    monitor = AnomalyMonitor(clock=ManualClock())
    monitor.observe_latency(KEY, 0.3)
    assert repr(monitor) == "AnomalyMonitor(window=5.0, series=1, active=0)"
    assert repr(monitor.detector("latency", KEY)).startswith(
        "Detector('latency', 'model:gpt-4o-mini', warming up"
    )


def test_a_long_gap_ends_the_evidence_of_a_shift_that_was_building() -> None:
    sim = Sim(1)
    base = Traffic(rate=20, signals=LAT)
    assert sim.run(300, base) == []
    assert sim.run(10, Traffic(rate=20, latency=1.05, signals=LAT)) == []
    detector = sim.monitor.detector("latency", KEY)
    assert detector is not None
    building_before = detector.building
    assert sim.run(3600, Traffic(rate=0, signals=LAT)) == []  # an hour without traffic
    building_after = detector.building
    assert building_before
    assert not building_after
    assert raised(sim.run(120, base), "latency") == []
