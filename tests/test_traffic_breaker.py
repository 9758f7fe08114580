"""The circuit breaker's state machine, driven by a ManualClock."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from hotpath._clock import ManualClock
from hotpath._errors import CircuitOpenError, ConfigError
from hotpath.traffic._breaker import BreakerConfig, BreakerState, BreakerStats, CircuitBreaker

Transition = tuple[str, BreakerState, BreakerState]


def make(**config: Any) -> tuple[CircuitBreaker, ManualClock, list[Transition]]:
    clock = ManualClock()
    breaker = CircuitBreaker("gpt-east", BreakerConfig(**config), clock=clock)
    seen: list[Transition] = []
    breaker.add_listener(lambda name, old, new: seen.append((name, old, new)))
    return breaker, clock, seen


def state(breaker: CircuitBreaker) -> BreakerState:
    """``breaker.state``, read afresh (mypy would narrow the property between reads)."""
    return breaker.state


def fail(breaker: CircuitBreaker, n: int, duration: float = 0.1) -> None:
    for _ in range(n):
        breaker.record_failure(duration)


def succeed(breaker: CircuitBreaker, n: int, duration: float = 0.1) -> None:
    for _ in range(n):
        breaker.record_success(duration)


def open_breaker(**config: Any) -> tuple[CircuitBreaker, ManualClock, list[Transition]]:
    breaker, clock, seen = make(window=10, min_calls=10, **config)
    fail(breaker, 10)
    assert state(breaker) == "open"
    return breaker, clock, seen


# -- closed ---------------------------------------------------------------------------


def test_defaults_follow_the_issue() -> None:
    assert BreakerConfig() == BreakerConfig(
        window=100,
        min_calls=20,
        failure_rate=0.5,
        slow_call_rate=1.0,
        slow_call_duration=60.0,
        wait=30.0,
        half_open_calls=3,
    )
    breaker = CircuitBreaker("x")
    assert state(breaker) == "closed"
    assert breaker.try_acquire() is True
    assert breaker.retry_after == 0.0


def test_no_rate_before_min_calls() -> None:
    """Nine failures out of nine calls do not open a breaker that needs ten calls."""
    breaker, _, seen = make(window=20, min_calls=10)
    fail(breaker, 9)
    assert state(breaker) == "closed"
    assert seen == []
    breaker.record_failure(0.1)
    assert state(breaker) == "open"
    assert seen == [("gpt-east", "closed", "open")]


def test_a_success_reaching_min_calls_can_open() -> None:
    """The rate is judged on every call once min_calls is reached, a success included."""
    breaker, _, _ = make(window=20, min_calls=10)
    fail(breaker, 9)
    breaker.record_success(0.1)  # 9 / 10 >= 0.5
    assert state(breaker) == "open"


def test_failure_rate_exactly_at_the_threshold_opens() -> None:
    breaker, _, _ = make(window=10, min_calls=10, failure_rate=0.3)
    succeed(breaker, 7)
    fail(breaker, 2)
    breaker.record_success(0.1)  # 2 / 10 < 0.3
    assert state(breaker) == "closed"
    breaker.record_failure(0.1)  # evicts a success: 3 / 10 == 0.3 (where 3 >= 0.3 * 10 is False)
    assert state(breaker) == "open"


def test_failure_rate_just_below_the_threshold_stays_closed() -> None:
    breaker, _, _ = make(window=100, min_calls=100, failure_rate=0.5)
    succeed(breaker, 51)
    fail(breaker, 49)
    assert state(breaker) == "closed"
    assert breaker.stats().failure_rate == 0.49


def test_slow_call_rate_exactly_at_the_threshold_opens() -> None:
    breaker, _, _ = make(
        window=10, min_calls=10, failure_rate=1.0, slow_call_rate=0.3, slow_call_duration=2.0
    )
    succeed(breaker, 8, duration=0.5)
    breaker.record_success(2.0)  # exactly slow_call_duration: slow
    breaker.record_success(1.999)  # not slow
    assert state(breaker) == "closed"
    assert breaker.stats().slow == 1
    breaker.record_failure(5.0)  # a failed slow call counts as slow too: 2 slow
    assert state(breaker) == "closed"
    breaker.record_success(3.0)  # 3 slow of 10
    assert state(breaker) == "open"
    assert (breaker.stats().slow, breaker.stats().failures) == (3, 1)


def test_sliding_window_forgets_old_outcomes() -> None:
    """Failures that slid out of the last `window` calls no longer count."""
    breaker, _, _ = make(window=10, min_calls=10)
    fail(breaker, 4)
    succeed(breaker, 6)
    stats = breaker.stats()
    assert (stats.calls, stats.failures) == (10, 4)
    succeed(breaker, 4)  # the four failures slide out
    stats = breaker.stats()
    assert (stats.calls, stats.failures, stats.failure_rate) == (10, 0, 0.0)
    fail(breaker, 4)  # 4 / 10: still below 0.5 (the old 4 are gone)
    assert state(breaker) == "closed"
    breaker.record_failure(0.1)
    assert state(breaker) == "open"


def test_quick_successes_push_slow_calls_and_failures_out() -> None:
    breaker, _, _ = make(window=4, min_calls=4, failure_rate=1.0, slow_call_duration=1.0)
    breaker.record_success(1.0)
    breaker.record_failure(2.0)
    succeed(breaker, 2)
    stats = breaker.stats()
    assert (stats.calls, stats.failures, stats.slow, stats.slow_call_rate) == (4, 1, 2, 0.5)
    succeed(breaker, 1)
    assert (breaker.stats().failures, breaker.stats().slow) == (1, 1)
    succeed(breaker, 1)
    assert (breaker.stats().failures, breaker.stats().slow) == (0, 0)
    assert state(breaker) == "closed"


def test_min_calls_equal_to_one() -> None:
    breaker, _, _ = make(window=5, min_calls=1, failure_rate=1.0)
    breaker.record_success(0.1)
    breaker.record_failure(0.1)  # 1 / 2 < 1.0
    assert state(breaker) == "closed"
    fresh, _, _ = make(window=5, min_calls=1, failure_rate=1.0)
    fresh.record_failure(0.1)
    assert state(fresh) == "open"


# -- open -----------------------------------------------------------------------------


def test_open_refuses_and_check_raises_with_retry_after() -> None:
    breaker, clock, _ = open_breaker(wait=30.0)
    assert breaker.try_acquire() is False
    clock.advance(12.5)
    assert breaker.retry_after == 17.5
    with pytest.raises(CircuitOpenError, match=r"'gpt-east' is open \(retry in 17.5 s\)") as info:
        breaker.check()
    assert info.value.name == "gpt-east"
    assert info.value.retry_after == 17.5
    assert breaker.stats().rejected == 2


def test_open_turns_half_open_after_wait() -> None:
    breaker, clock, seen = open_breaker(wait=30.0)
    clock.advance(29.999)
    assert state(breaker) == "open"
    clock.advance(0.001)
    assert breaker.retry_after == 0.0
    assert state(breaker) == "half_open"
    assert seen == [("gpt-east", "closed", "open"), ("gpt-east", "open", "half_open")]


def test_outcomes_recorded_while_open_are_dropped() -> None:
    """Calls let through before the breaker opened may finish later: they decide nothing."""
    breaker, clock, _ = open_breaker(wait=10.0, half_open_calls=2)
    succeed(breaker, 5)
    clock.advance(10.0)
    assert state(breaker) == "half_open"
    assert breaker.stats().calls == 0
    breaker.record_success(0.1)  # no trial permit was handed out: not a trial
    assert breaker.stats().calls == 0


def test_stats_while_open_show_what_opened_it() -> None:
    breaker, clock, _ = make(window=10, min_calls=10)
    succeed(breaker, 5)
    fail(breaker, 5)
    clock.advance(1.0)
    assert breaker.stats() == BreakerStats(
        name="gpt-east",
        state="open",
        calls=10,
        failures=5,
        slow=0,
        failure_rate=0.5,
        slow_call_rate=0.0,
        opened=1,
        rejected=0,
        retry_after=29.0,
    )


# -- half-open ------------------------------------------------------------------------


def test_half_open_permits_are_limited() -> None:
    breaker, clock, _ = open_breaker(wait=5.0, half_open_calls=3)
    clock.advance(5.0)
    assert [breaker.try_acquire() for _ in range(4)] == [True, True, True, False]
    with pytest.raises(CircuitOpenError, match="half-open") as info:
        breaker.check()
    assert info.value.retry_after is None
    # Finished trials keep their permits: no fourth call until the breaker decides.
    succeed(breaker, 2)
    assert breaker.try_acquire() is False
    assert state(breaker) == "half_open"


def test_trials_all_succeeding_close_with_a_fresh_window() -> None:
    breaker, clock, seen = open_breaker(wait=5.0, half_open_calls=3)
    clock.advance(5.0)
    for _ in range(3):
        assert breaker.try_acquire()
    succeed(breaker, 3)
    assert state(breaker) == "closed"
    assert seen[-1] == ("gpt-east", "half_open", "closed")
    stats = breaker.stats()
    assert (stats.calls, stats.failures, stats.opened) == (0, 0, 1)
    fail(breaker, 9)  # the old failures are gone: min_calls counts again from zero
    assert state(breaker) == "closed"


def test_trials_at_the_failure_rate_reopen() -> None:
    """One failure in two trials is a rate of 0.5: open again, for a full wait."""
    breaker, clock, seen = open_breaker(wait=5.0, half_open_calls=2)
    clock.advance(5.0)
    assert breaker.try_acquire() and breaker.try_acquire()
    breaker.record_success(0.1)
    breaker.record_failure(0.1)
    assert state(breaker) == "open"
    assert breaker.retry_after == 5.0
    assert seen[-1] == ("gpt-east", "half_open", "open")
    assert breaker.stats().opened == 2


def test_slow_trials_reopen() -> None:
    breaker, clock, _ = open_breaker(wait=5.0, half_open_calls=2, slow_call_rate=0.5)
    clock.advance(5.0)
    assert breaker.try_acquire() and breaker.try_acquire()
    breaker.record_success(0.1)
    breaker.record_success(60.0)
    assert state(breaker) == "open"


def test_trials_below_both_rates_close() -> None:
    breaker, clock, _ = open_breaker(wait=5.0, half_open_calls=3, failure_rate=0.5)
    clock.advance(5.0)
    for _ in range(3):
        assert breaker.try_acquire()
    breaker.record_failure(0.1)  # 1 / 3 < 0.5
    succeed(breaker, 2)
    assert state(breaker) == "closed"


def test_release_frees_a_half_open_permit() -> None:
    breaker, clock, _ = open_breaker(wait=5.0, half_open_calls=2)
    clock.advance(5.0)
    assert breaker.try_acquire() and breaker.try_acquire()
    assert breaker.try_acquire() is False
    breaker.release()  # a cancelled trial
    assert breaker.try_acquire() is True
    succeed(breaker, 2)
    assert state(breaker) == "closed"


def test_release_does_not_free_a_finished_trial() -> None:
    breaker, clock, _ = open_breaker(wait=5.0, half_open_calls=2)
    clock.advance(5.0)
    assert breaker.try_acquire() and breaker.try_acquire()
    breaker.record_success(0.1)
    breaker.release()
    breaker.release()  # one more than the outstanding trial: ignored
    assert breaker.try_acquire() is True
    assert breaker.try_acquire() is False


def test_release_is_a_no_op_when_closed() -> None:
    breaker, _, _ = make()
    breaker.release()
    assert breaker.stats().calls == 0


# -- listeners and forced states ---------------------------------------------------------


def test_listeners_see_every_transition_in_order() -> None:
    breaker, clock, seen = open_breaker(wait=5.0, half_open_calls=1)
    clock.advance(5.0)
    assert breaker.try_acquire()
    breaker.record_failure(0.1)
    clock.advance(5.0)
    assert breaker.try_acquire()
    breaker.record_success(0.1)
    assert [(old, new) for _, old, new in seen] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


def test_a_failing_listener_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    breaker, _, seen = make(window=2, min_calls=1)

    def broken(name: str, old: BreakerState, new: BreakerState) -> None:
        raise RuntimeError("boom")

    breaker.add_listener(broken)
    with caplog.at_level(logging.ERROR, logger="hotpath.traffic"):
        breaker.record_failure(0.1)
    assert state(breaker) == "open"
    assert [r.getMessage() for r in caplog.records] == [
        f"circuit breaker 'gpt-east': listener {broken!r} failed"
    ]
    assert seen == [("gpt-east", "closed", "open")]


def test_force_open_until_a_wall_time() -> None:
    breaker, clock, seen = make()
    clock.advance(3.0)
    breaker.force_state("open", until=clock.now() + 12.0)
    assert state(breaker) == "open"
    assert breaker.retry_after == 12.0
    breaker.force_state("open", until=clock.now() + 20.0)  # already open: only the end moves
    assert breaker.retry_after == 20.0
    assert seen == [("gpt-east", "closed", "open")]
    assert breaker.stats().opened == 1


def test_force_open_without_until_waits_the_configured_time() -> None:
    breaker, _, _ = make(wait=7.0)
    breaker.force_state("open")
    assert breaker.retry_after == 7.0


def test_force_closed_and_half_open() -> None:
    breaker, _, seen = open_breaker()
    breaker.force_state("half_open")
    assert breaker.try_acquire() is True
    breaker.force_state("half_open")  # no-op: keeps the permit taken
    assert breaker.stats().state == "half_open"
    breaker.force_state("closed")
    breaker.force_state("closed")
    assert state(breaker) == "closed"
    assert [(old, new) for _, old, new in seen] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


def test_force_state_is_not_reported_to_the_sync_hook() -> None:
    """Only local decisions reach the Redis sync, so a remote one never echoes back."""
    breaker, clock, _ = make(window=2, min_calls=2, wait=5.0, half_open_calls=1)
    told: list[tuple[BreakerState, BreakerState]] = []
    breaker._sync = lambda b, old, new: told.append((old, new))
    breaker.force_state("open", until=clock.now() + 5.0)
    breaker.force_state("closed")
    assert told == []
    fail(breaker, 2)
    clock.advance(5.0)
    assert breaker.try_acquire()
    breaker.record_success(0.1)
    assert told == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


# -- arguments ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("window", 0, "BreakerConfig.window must be an int >= 1, got 0"),
        ("window", 10.0, "BreakerConfig.window must be an int >= 1, got 10.0"),
        ("min_calls", True, "BreakerConfig.min_calls must be an int >= 1, got True"),
        ("min_calls", 101, "BreakerConfig.min_calls must be <= window (100), got 101"),
        ("failure_rate", 0, "BreakerConfig.failure_rate must be a positive number, got 0"),
        ("failure_rate", 1.5, "BreakerConfig.failure_rate must be a fraction in (0, 1], got 1.5"),
        (
            "slow_call_rate",
            "1",
            "BreakerConfig.slow_call_rate must be a positive number, got str '1'",
        ),
        (
            "slow_call_duration",
            float("nan"),
            "BreakerConfig.slow_call_duration must be a positive number, got float nan",
        ),
        ("wait", -1.0, "BreakerConfig.wait must be a positive number, got -1.0"),
        ("half_open_calls", 0, "BreakerConfig.half_open_calls must be an int >= 1, got 0"),
    ],
)
def test_config_errors_name_the_field_and_value(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        BreakerConfig(**{field: value})  # type: ignore[arg-type]
    assert str(info.value) == message


def test_rates_are_stored_as_floats() -> None:
    config = BreakerConfig(failure_rate=1, slow_call_rate=1, wait=5)
    assert (config.failure_rate, config.slow_call_rate, config.wait) == (1.0, 1.0, 5.0)
    assert type(config.wait) is float


def raises_config_error(fn: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_breaker_argument_errors() -> None:
    assert raises_config_error(CircuitBreaker, "") == "name must be a non-empty string, got ''"
    assert (
        raises_config_error(CircuitBreaker, "x", {})
        == "config must be a BreakerConfig, got dict {}"
    )
    breaker = CircuitBreaker("x")
    assert (
        raises_config_error(breaker.force_state, "shut")
        == "state must be one of 'closed', 'open', 'half_open', got 'shut'"
    )
    assert (
        raises_config_error(breaker.force_state, "closed", until=1.0)
        == "until only applies to 'open', got state 'closed'"
    )
    assert (
        raises_config_error(breaker.force_state, "open", until="5")
        == "until must be a wall time in seconds, got '5'"
    )
    assert raises_config_error(breaker.add_listener, 3) == "listener must be callable, got 3"
    assert repr(breaker) == "CircuitBreaker('x', state='closed')"
