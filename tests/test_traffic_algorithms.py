"""Concurrency-limit algorithms as state machines fed synthetic samples."""

from __future__ import annotations

import pytest

from hotpath._errors import ConfigError
from hotpath.traffic._limit_algorithms import (
    AIMDLimit,
    FixedLimit,
    Gradient2Limit,
    LimitAlgorithm,
    VegasLimit,
    algorithm_from_name,
)


def feed_window(
    alg: LimitAlgorithm,
    start: float,
    rtt: float,
    *,
    inflight: int | None = None,
    samples: int = 20,
    drops: int = 0,
    length: float = 1.0,
) -> int:
    """``samples`` samples from ``start`` to ``start + length`` seconds, the first
    ``drops`` of them dropped: exactly one window of the windowed algorithms when the
    windows are fed back to back."""
    limit = alg.limit
    for i in range(samples):
        now = start + length * i / (samples - 1)
        busy = limit if inflight is None else inflight
        limit = alg.update(now=now, rtt=rtt, inflight=busy, dropped=i < drops)
    return limit


def knee_rtt(limit: int, capacity: int = 32, base: float = 0.2) -> float:
    """Latency of an upstream serving ``capacity`` calls at full speed, then sharing."""
    return base * max(1.0, limit / capacity)


def run_upstream(alg: LimitAlgorithm, windows: int) -> list[int]:
    limits = []
    for w in range(windows):
        limits.append(feed_window(alg, float(w), knee_rtt(alg.limit), samples=100))
    return limits


# -- FixedLimit ---------------------------------------------------------------------------


def test_fixed_limit_never_moves() -> None:
    alg = FixedLimit(7)
    assert alg.update(now=1.0, rtt=100.0, inflight=7, dropped=True) == 7
    assert alg.limit == 7


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "10"])
def test_fixed_limit_rejects_a_bad_limit(bad: object) -> None:
    with pytest.raises(ConfigError, match=rf"limit must be an int >= 1, got {bad!r}"):
        FixedLimit(bad)  # type: ignore[arg-type]


# -- AIMD ---------------------------------------------------------------------------------


def test_aimd_adds_one_slot_per_round_trip_of_a_full_limit() -> None:
    alg = AIMDLimit(initial=10)
    for i in range(10):
        alg.update(now=float(i), rtt=0.1, inflight=10, dropped=False)
    assert alg.limit == 10  # 1/10 + 1/10.1 + ... stays just under 11 after 10 samples
    alg.update(now=11.0, rtt=0.1, inflight=10, dropped=False)
    assert alg.limit == 11


def test_aimd_does_not_grow_while_the_caller_is_the_bottleneck() -> None:
    alg = AIMDLimit(initial=10)
    for i in range(100):
        alg.update(now=float(i), rtt=0.1, inflight=4, dropped=False)
    assert alg.limit == 10


def test_aimd_backs_off_on_a_drop_and_on_a_call_slower_than_timeout() -> None:
    alg = AIMDLimit(initial=100, backoff_ratio=0.5, timeout=1.0)
    assert alg.update(now=10.0, rtt=0.1, inflight=100, dropped=True) == 50
    assert alg.update(now=20.0, rtt=1.5, inflight=50, dropped=False) == 25


def test_aimd_backs_off_once_per_round_trip() -> None:
    alg = AIMDLimit(initial=100, backoff_ratio=0.5)
    alg.update(now=10.0, rtt=1.0, inflight=100, dropped=True)
    # started at 9.5, before the backoff at 10.0: it saw the old limit
    assert alg.update(now=10.5, rtt=1.0, inflight=100, dropped=True) == 50
    # started at 10.5, after the backoff: a new signal
    assert alg.update(now=11.0, rtt=0.5, inflight=50, dropped=True) == 25


def test_aimd_respects_min_and_max() -> None:
    alg = AIMDLimit(initial=3, min_limit=2, max_limit=4, backoff_ratio=0.5)
    for i in range(5):
        alg.update(now=float(i), rtt=0.0, inflight=3, dropped=True)
    assert alg.limit == 2
    for i in range(100):
        alg.update(now=10.0 + i, rtt=0.1, inflight=4, dropped=False)
    assert alg.limit == 4


# -- Vegas --------------------------------------------------------------------------------


def test_vegas_changes_nothing_before_a_window_is_complete() -> None:
    alg = VegasLimit(initial=20, window=1.0, min_samples=10)
    for i in range(9):
        assert alg.update(now=5.0 + i, rtt=0.1, inflight=20, dropped=False) == 20
    assert alg.update(now=0.5, rtt=0.1, inflight=20, dropped=False) == 20  # 0.5 s, 1 sample


def test_vegas_grows_fast_while_latency_stays_at_the_baseline() -> None:
    alg = VegasLimit(initial=20)
    feed_window(alg, 0.0, 0.2)  # learns the baseline: queue 0 -> + 6 * log10(20)
    assert alg.limit == 27
    assert alg.baseline == pytest.approx(0.2)
    feed_window(alg, 1.0, 0.2)
    assert alg.limit == 36  # 27.8 + 6 * log10(27.8)


def test_vegas_shrinks_when_latency_rises_and_on_drops() -> None:
    alg = VegasLimit(initial=100)
    assert feed_window(alg, 0.0, 0.2) == 112  # 100 + 6 * log10(100)
    # queue = limit / 2, far above beta * log10(limit): - log10(112)
    assert feed_window(alg, 1.0, 0.4) == 109  # 109.95
    assert feed_window(alg, 2.0, 0.2, drops=1) == 107  # 109.95 - log10(109.95)


def test_vegas_settles_just_above_the_knee() -> None:
    limits = run_upstream(VegasLimit(), 30)
    settled = limits[5:]
    assert min(settled) >= 36, limits
    assert max(settled) <= 44, limits


def test_vegas_respects_min_and_max() -> None:
    alg = VegasLimit(initial=5, min_limit=4, max_limit=8)
    for w in range(5):
        feed_window(alg, float(w), 0.2)
    assert alg.limit == 8
    for w in range(5, 20):
        feed_window(alg, float(w), 0.2, drops=20)
    assert alg.limit == 4


# -- Gradient2 ----------------------------------------------------------------------------


def test_gradient2_slow_start_grows_by_half_per_window() -> None:
    alg = Gradient2Limit(initial=20)
    assert feed_window(alg, 0.0, 0.2) == 30
    assert feed_window(alg, 1.0, 0.2) == 45


def test_gradient2_ignores_windows_where_the_caller_is_the_bottleneck() -> None:
    alg = Gradient2Limit(initial=20)
    assert feed_window(alg, 0.0, 0.2, inflight=5) == 20


def test_gradient2_backs_off_when_latency_exceeds_the_tolerance() -> None:
    alg = Gradient2Limit(initial=100, smoothing=1.0, queue_size=0)
    feed_window(alg, 0.0, 0.2)  # baseline 0.2 (slow start: 150)
    assert alg.limit == 150
    feed_window(alg, 1.0, 0.6)  # gradient 1.5 * 0.2 / 0.6 = 0.5
    assert alg.limit == 75


def test_gradient2_never_more_than_halves_in_a_window() -> None:
    alg = Gradient2Limit(initial=100, smoothing=1.0, queue_size=0)
    feed_window(alg, 0.0, 0.2)
    feed_window(alg, 1.0, 20.0)
    assert alg.limit == 75


def test_gradient2_backs_off_with_the_share_of_drops() -> None:
    alg = Gradient2Limit(initial=100, smoothing=1.0, queue_size=0)
    feed_window(alg, 0.0, 0.2)
    feed_window(alg, 1.0, 0.2, drops=5)  # a quarter dropped: gradient 0.75
    assert alg.limit == 112


def test_gradient2_converges_near_the_latency_knee() -> None:
    limits = run_upstream(Gradient2Limit(), 40)
    # it settles where latency is about rtt_tolerance times the baseline: 1.5 * 32 = 48
    settled = limits[4:]
    assert min(settled) >= 40, limits
    assert max(settled) <= 60, limits


def test_gradient2_respects_min_and_max() -> None:
    alg = Gradient2Limit(initial=5, min_limit=3, max_limit=9)
    for w in range(5):
        feed_window(alg, float(w), 0.2)
    assert alg.limit == 9
    for w in range(5, 30):
        feed_window(alg, float(w), 0.2, drops=20)
    assert alg.limit == 3


# -- construction -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("fixed", FixedLimit),
        ("aimd", AIMDLimit),
        ("vegas", VegasLimit),
        ("gradient2", Gradient2Limit),
    ],
)
def test_algorithm_from_name(name: str, kind: type) -> None:
    alg = algorithm_from_name(name, initial=7, max_limit=50)
    assert isinstance(alg, kind)
    assert alg.limit == 7


def test_algorithm_from_name_rejects_an_unknown_name() -> None:
    with pytest.raises(ConfigError, match=r"unknown concurrency algorithm 'bbr'; expected one of"):
        algorithm_from_name("bbr")


def test_algorithm_from_name_fixed_above_max_limit() -> None:
    with pytest.raises(ConfigError, match=r"initial must be <= max_limit, got 60 > 50"):
        algorithm_from_name("fixed", initial=60, max_limit=50)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: AIMDLimit(min_limit=10, max_limit=5, initial=5), "min_limit must be <= max_limit"),
        (lambda: AIMDLimit(initial=0), "initial must be an int >= 1, got 0"),
        (
            lambda: VegasLimit(initial=2000),
            "initial must be within .min_limit, max_limit., got 2000",
        ),
        (lambda: AIMDLimit(backoff_ratio=1.0), "backoff_ratio must be in .0, 1., got 1.0"),
        (lambda: AIMDLimit(backoff_ratio=1.5), "backoff_ratio must be in .0, 1., got 1.5"),
        (lambda: AIMDLimit(timeout=0), "timeout must be a positive number, got 0"),
        (lambda: VegasLimit(smoothing=0), "smoothing must be a positive number, got 0"),
        (lambda: VegasLimit(alpha=6, beta=3), "beta must be > alpha, got beta=3, alpha=6"),
        (lambda: VegasLimit(window=-1.0), "window must be a positive number, got -1.0"),
        (lambda: Gradient2Limit(rtt_tolerance=0.5), "rtt_tolerance must be >= 1, got 0.5"),
        (lambda: Gradient2Limit(long_window=0), "long_window must be an int >= 1, got 0"),
        (lambda: Gradient2Limit(min_samples=0), "min_samples must be an int >= 1, got 0"),
        (lambda: Gradient2Limit(queue_size=-1), "queue_size must be an int >= 0, got -1"),
    ],
)
def test_bad_arguments_name_the_argument_and_value(factory: object, message: str) -> None:
    assert callable(factory)
    with pytest.raises(ConfigError, match=message):
        factory()
