"""Retries: backoff, what is retryable, when to give up, the retry budget, and the
``retry`` / ``retrying`` wrappers. Time is a ManualClock; sleeps are recorded."""

from __future__ import annotations

import random

import pytest

from hotpath._clock import ManualClock
from hotpath._errors import (
    CircuitOpenError,
    ConfigError,
    OverloadedError,
    RateLimitedError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamStreamCutError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from hotpath.traffic._retry import (
    RetryPolicy,
    RetryState,
    is_retryable,
    retry,
    retry_after_of,
    retrying,
)
from hotpath.traffic._retry_budget import RetryBudget, RetryBudgetStats


def status(code: int, retry_after: float | None = None) -> UpstreamStatusError:
    return UpstreamStatusError(f"HTTP {code}", status=code, body=b"{}", retry_after=retry_after)


class Sleeper:
    """An injected ``sleep`` that records each delay and moves the clock by it."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.advance(seconds)


# --- backoff ---------------------------------------------------------------------


def test_full_jitter_stays_within_the_capped_exponential_bound() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    caps = {1: 0.5, 2: 1.0, 3: 2.0, 4: 4.0, 5: 8.0, 6: 8.0, 40: 8.0, 5000: 8.0}
    for seed in range(200):
        rng = random.Random(seed)
        for retry_no, cap in caps.items():
            delay = policy.delay(retry_no, rng=rng)
            assert delay >= 0.0
            assert delay <= cap


def test_full_jitter_covers_the_whole_range() -> None:
    """Full jitter: delays spread over [0, cap], not bunched near the cap."""
    policy = RetryPolicy(base_delay=1.0, max_delay=4.0)
    rng = random.Random(7)
    samples = [policy.delay(3, rng=rng) for _ in range(2000)]
    assert min(samples) < 0.1
    assert max(samples) > 3.9
    # Uniform over [0, 4]: the mean is 2 (seeded, so this is exact for the run).
    assert sum(samples) / len(samples) == pytest.approx(2.0, abs=0.2)


def test_retry_after_is_a_floor_on_the_delay() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    for seed in range(100):
        rng = random.Random(seed)
        assert policy.delay(1, retry_after=3.0, rng=rng) == 3.0  # jitter <= 0.5
        got = policy.delay(5, retry_after=0.25, rng=random.Random(seed))
        assert got == max(0.25, policy.delay(5, rng=random.Random(seed)))


def test_zero_base_delay_means_no_wait() -> None:
    assert RetryPolicy(base_delay=0.0).delay(3, rng=random.Random(1)) == 0.0


def test_delay_rejects_a_retry_number_below_one() -> None:
    with pytest.raises(ConfigError, match="retry must be an int >= 1, got 0"):
        RetryPolicy().delay(0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"attempts": 0}, "attempts must be an int >= 1, got 0"),
        ({"attempts": 2.0}, "attempts must be an int >= 1, got 2.0"),
        ({"base_delay": -1.0}, "base_delay must be a number >= 0, got -1.0"),
        ({"max_delay": float("nan")}, "max_delay must be a number >= 0"),
        ({"max_elapsed": -0.5}, "max_elapsed must be a number >= 0, got -0.5"),
        ({"max_retry_after": "10"}, "max_retry_after must be a number >= 0, got str '10'"),
    ],
)
def test_policy_rejects_bad_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        RetryPolicy(**options)  # type: ignore[arg-type]


# --- classification ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (UpstreamUnavailableError("connect refused"), True),
        (UpstreamTimeoutError("no answer"), True),
        (UpstreamStreamCutError("cut"), True),
        (status(408), True),
        (status(409), True),
        (status(425), True),
        (status(429), True),
        (status(500), True),
        (status(502), True),
        (status(503), True),
        (status(504), True),
        (status(529), True),
        (status(400), False),
        (status(401), False),
        (status(403), False),
        (status(404), False),
        (status(422), False),
        (status(501), False),
        (RateLimitedError("spent", limit="tenant:a:rpm", retry_after=1.0), False),
        (OverloadedError("shed"), False),
        (CircuitOpenError("open", name="east"), False),
        (UpstreamError("generic"), False),
        (ValueError("bug"), False),
        (KeyboardInterrupt(), False),
    ],
)
def test_retryable_classification(exc: BaseException, expected: bool) -> None:
    assert is_retryable(exc) is expected


@pytest.mark.parametrize(
    "exc",
    [
        UpstreamUnavailableError("x"),
        UpstreamTimeoutError("x"),
        UpstreamStreamCutError("x"),
        status(503),
        status(429),
    ],
)
def test_nothing_is_retryable_once_bytes_were_streamed(exc: BaseException) -> None:
    assert is_retryable(exc, streamed=True) is False


def test_retry_after_of_reads_status_and_traffic_errors() -> None:
    assert retry_after_of(status(429, retry_after=2.5)) == 2.5
    assert retry_after_of(status(429)) is None
    assert retry_after_of(RateLimitedError("x", limit="l", retry_after=4.0)) == 4.0
    assert retry_after_of(status(503, retry_after=float("nan"))) is None
    assert retry_after_of(status(503, retry_after=-1.0)) is None
    assert retry_after_of(UpstreamTimeoutError("x")) is None


# --- RetryState ------------------------------------------------------------------------


def test_state_grants_retries_then_gives_up_on_attempts() -> None:
    clock = ManualClock()
    state = RetryState(RetryPolicy(attempts=3, base_delay=1.0), clock=clock, rng=random.Random(3))
    assert (state.attempts, state.retries, state.gave_up) == (1, 0, None)
    first = state.next_delay(status(503))
    assert first is not None
    assert first >= 0.0
    assert first <= 1.0
    second = state.next_delay(status(503))
    assert second is not None
    assert second >= 0.0
    assert second <= 2.0
    assert (state.attempts, state.retries) == (3, 2)
    assert state.next_delay(status(503)) is None
    assert state.gave_up == "attempts"
    assert state.attempts == 3


def test_state_gives_up_on_an_error_that_is_not_retryable() -> None:
    state = RetryState(RetryPolicy(), clock=ManualClock())
    assert state.next_delay(status(400)) is None
    assert state.gave_up == "not_retryable"
    assert state.attempts == 1


def test_state_gives_up_once_bytes_were_streamed() -> None:
    state = RetryState(RetryPolicy(), clock=ManualClock())
    assert state.next_delay(UpstreamStreamCutError("cut"), streamed=True) is None
    assert state.gave_up == "not_retryable"


def test_state_gives_up_on_a_retry_after_beyond_the_maximum() -> None:
    state = RetryState(RetryPolicy(max_retry_after=10.0), clock=ManualClock())
    assert state.next_delay(status(429, retry_after=10.5)) is None
    assert state.gave_up == "retry_after"


def test_state_waits_the_retry_after_when_it_is_allowed() -> None:
    state = RetryState(
        RetryPolicy(max_retry_after=10.0, base_delay=0.1), clock=ManualClock(), rng=random.Random(1)
    )
    assert state.next_delay(status(429, retry_after=7.0)) == 7.0


def test_state_does_not_start_a_retry_past_max_elapsed() -> None:
    clock = ManualClock()
    policy = RetryPolicy(attempts=10, base_delay=0.0, max_elapsed=5.0)
    state = RetryState(policy, clock=clock)
    clock.advance(4.0)
    assert state.next_delay(UpstreamTimeoutError("slow")) == 0.0  # starts at 4.0 s
    clock.advance(1.0)
    assert state.next_delay(UpstreamTimeoutError("slow")) == 0.0  # starts at exactly 5.0 s
    clock.advance(0.001)
    assert state.next_delay(UpstreamTimeoutError("slow")) is None
    assert state.gave_up == "elapsed"
    assert state.attempts == 3


def test_state_skips_a_retry_whose_delay_would_cross_max_elapsed() -> None:
    clock = ManualClock()
    state = RetryState(RetryPolicy(max_elapsed=5.0), clock=clock)
    clock.advance(2.0)
    assert state.next_delay(status(503, retry_after=3.5)) is None
    assert state.gave_up == "elapsed"


def test_state_gives_up_when_the_budget_refuses() -> None:
    clock = ManualClock()
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0, clock=clock)  # 1 retry
    first = RetryState(RetryPolicy(base_delay=0.0), budget=budget, clock=clock)
    assert first.next_delay(status(502)) == 0.0
    second = RetryState(RetryPolicy(base_delay=0.0), budget=budget, clock=clock)
    assert second.next_delay(status(502)) is None
    assert second.gave_up == "budget"
    assert budget.stats() == RetryBudgetStats(requests=2, retries=1, refused=1, balance=0.0)


def test_state_spends_no_budget_on_a_retry_it_does_not_take() -> None:
    clock = ManualClock()
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0, clock=clock)
    state = RetryState(RetryPolicy(attempts=1), budget=budget, clock=clock)
    assert state.next_delay(status(503)) is None
    assert state.gave_up == "attempts"
    assert budget.stats().retries == 0
    assert budget.stats().refused == 0


def test_state_uses_a_custom_retryable_predicate() -> None:
    state = RetryState(
        RetryPolicy(base_delay=0.0),
        clock=ManualClock(),
        retryable=lambda e: isinstance(e, KeyError),
    )
    assert state.next_delay(KeyError("k")) == 0.0
    assert state.next_delay(KeyError("k"), streamed=True) is None
    assert state.gave_up == "not_retryable"


# --- the budget --------------------------------------------------------------------


def test_budget_caps_retries_under_a_total_failure_storm() -> None:
    """10k calls over 100 s, every try failing: retries stay near ratio + the floor."""
    clock = ManualClock()
    budget = RetryBudget(ratio=0.1, min_per_second=1.0, window=10.0, clock=clock)
    policy = RetryPolicy(attempts=3, base_delay=0.0)
    sent = 0
    for _ in range(10_000):
        state = RetryState(policy, budget=budget, clock=clock)
        sent += 1
        while state.next_delay(status(503)) is not None:
            sent += 1
        clock.advance(0.01)  # 100 calls a second
    stats = budget.stats()
    assert stats.requests == 10_000
    # Per 10 s window: 0.1 * 1000 requests + 1 * 10 floor = 110 retries at most,
    # i.e. 0.11 per request; without a budget it would have been 2.0.
    assert stats.retries / stats.requests == pytest.approx(0.1075, abs=0.0075)
    assert stats.refused > 9_000
    assert sent == stats.requests + stats.retries


def test_budget_floor_allows_retries_without_traffic() -> None:
    clock = ManualClock()
    budget = RetryBudget(ratio=0.1, min_per_second=0.5, window=10.0, clock=clock)
    assert [budget.try_spend() for _ in range(6)] == [True] * 5 + [False]
    assert budget.stats().balance == 0.0


def test_budget_grows_with_requests() -> None:
    clock = ManualClock()
    budget = RetryBudget(ratio=0.2, min_per_second=0.0, window=10.0, clock=clock)
    assert budget.try_spend() is False
    for _ in range(10):
        budget.record_request()
    assert budget.stats().balance == pytest.approx(2.0)
    assert [budget.try_spend() for _ in range(3)] == [True, True, False]


def test_budget_recovers_as_the_window_slides() -> None:
    clock = ManualClock()
    budget = RetryBudget(ratio=0.0, min_per_second=0.2, window=10.0, clock=clock)  # 2 / window
    assert [budget.try_spend() for _ in range(3)] == [True, True, False]
    clock.advance(5.0)
    assert budget.try_spend() is False  # the spent retries are still in the window
    clock.advance(5.0)
    assert [budget.try_spend() for _ in range(3)] == [True, True, False]
    clock.advance(100.0)  # far past the window: everything expired at once
    assert budget.stats().balance == pytest.approx(2.0)


def test_budget_deposits_expire_too() -> None:
    clock = ManualClock()
    budget = RetryBudget(ratio=0.5, min_per_second=0.0, window=10.0, clock=clock)
    for _ in range(4):
        budget.record_request()
    clock.advance(10.0)
    assert budget.try_spend() is False
    assert budget.stats() == RetryBudgetStats(requests=4, retries=0, refused=1, balance=0.0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ratio": -0.1}, "ratio must be a number >= 0, got -0.1"),
        ({"min_per_second": float("inf")}, "min_per_second must be a number >= 0"),
        ({"window": 0}, "window must be a positive number, got 0"),
    ],
)
def test_budget_rejects_bad_options(options: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        RetryBudget(**options)  # type: ignore[arg-type]


# --- retry() and @retrying -----------------------------------------------------------


async def test_retry_returns_the_first_success() -> None:
    clock = ManualClock()
    sleeper = Sleeper(clock)
    outcomes: list[Exception | str] = [UpstreamUnavailableError("down"), status(502), "ok"]

    async def call() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    policy = RetryPolicy(attempts=3, base_delay=1.0)
    got = await retry(call, policy=policy, clock=clock, sleep=sleeper, rng=random.Random(5))
    assert got == "ok"
    assert outcomes == []
    assert len(sleeper.delays) == 2
    assert sleeper.delays[0] >= 0.0
    assert sleeper.delays[0] <= 1.0
    assert sleeper.delays[1] >= 0.0
    assert sleeper.delays[1] <= 2.0


async def test_retry_raises_the_last_error_when_attempts_run_out() -> None:
    clock = ManualClock()
    sleeper = Sleeper(clock)
    errors = [status(503), status(502), status(504)]
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        raise errors[calls - 1]

    with pytest.raises(UpstreamStatusError) as caught:
        await retry(call, policy=RetryPolicy(attempts=3), clock=clock, sleep=sleeper)
    assert caught.value is errors[2]
    assert calls == 3
    assert len(sleeper.delays) == 2


async def test_retry_does_not_retry_a_final_error() -> None:
    clock = ManualClock()
    sleeper = Sleeper(clock)
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        raise status(401)

    with pytest.raises(UpstreamStatusError, match="HTTP 401"):
        await retry(call, clock=clock, sleep=sleeper)
    assert calls == 1
    assert sleeper.delays == []


async def test_retry_honours_retry_after_and_the_elapsed_bound() -> None:
    clock = ManualClock()
    sleeper = Sleeper(clock)
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        raise status(429, retry_after=4.0)

    policy = RetryPolicy(attempts=10, base_delay=0.1, max_elapsed=10.0)
    with pytest.raises(UpstreamStatusError):
        await retry(call, policy=policy, clock=clock, sleep=sleeper)
    assert sleeper.delays == [4.0, 4.0]  # a third wait would start the retry at 12 s
    assert calls == 3
    assert clock.monotonic() == 8.0


async def test_retry_with_a_custom_predicate() -> None:
    clock = ManualClock()
    sleeper = Sleeper(clock)
    calls = 0

    async def call() -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionResetError("reset")
        return calls

    got = await retry(
        call,
        retryable=lambda e: isinstance(e, ConnectionError),
        policy=RetryPolicy(base_delay=0.0),
        clock=clock,
        sleep=sleeper,
    )
    assert got == 3
    assert sleeper.delays == [0.0, 0.0]


async def test_retrying_decorator_passes_arguments_and_retries() -> None:
    clock = ManualClock()
    sleeper = Sleeper(clock)
    seen: list[tuple[int, str]] = []

    @retrying(RetryPolicy(attempts=2, base_delay=0.0), clock=clock, sleep=sleeper)
    async def fetch(n: int, *, tag: str) -> str:
        """Fetch something."""
        seen.append((n, tag))
        if len(seen) == 1:
            raise UpstreamTimeoutError("slow")
        return f"{tag}{n}"

    assert await fetch(7, tag="x") == "x7"
    assert seen == [(7, "x"), (7, "x")]
    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch something."


async def test_retrying_decorator_shares_its_budget_across_calls() -> None:
    clock = ManualClock()
    sleeper = Sleeper(clock)
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0, clock=clock)  # 1 retry
    calls = 0

    @retrying(RetryPolicy(attempts=5, base_delay=0.0), budget=budget, clock=clock, sleep=sleeper)
    async def down() -> None:
        nonlocal calls
        calls += 1
        raise UpstreamUnavailableError("down")

    for _ in range(3):
        with pytest.raises(UpstreamUnavailableError):
            await down()
    assert calls == 4  # 3 first tries + the one retry the budget allowed
    assert budget.stats() == RetryBudgetStats(requests=3, retries=1, refused=3, balance=0.0)
