"""Reading providers' rate-limit headers and pacing one deployment by them."""

from __future__ import annotations

import logging

import pytest

from hotpath._clock import ManualClock
from hotpath._errors import ConfigError
from hotpath.traffic._provider_limits import (
    ProviderLimits,
    ProviderLimitStats,
    parse_duration,
    parse_http_date,
    parse_retry_after,
    parse_timestamp,
)

# ManualClock() starts at this wall time: 2023-11-14T22:13:20Z.
START = 1_700_000_000.0
START_RFC3339 = "2023-11-14T22:13:20Z"
START_HTTP = "Tue, 14 Nov 2023 22:13:20 GMT"


def limits(pace_below: float = 0.1) -> tuple[ProviderLimits, ManualClock]:
    clock = ManualClock(START)
    return ProviderLimits(clock=clock, pace_below=pace_below), clock


# --- parsing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("0.5s", 0.5),
        ("1h2m3.5s", 3723.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1m30.25s", 90.25),
        ("17ms", 0.017),
        ("250us", 0.00025),
        ("3", 3.0),
        ("0.75", 0.75),
        (" 12s ", 12.0),
    ],
)
def test_parse_duration_forms(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "1x", "-1s", "1s2", "abc", "1.2.3s", "nan", "-4", "1 s"])
def test_parse_duration_rejects_garbage(text: str) -> None:
    assert parse_duration(text) is None


def test_parse_timestamps() -> None:
    assert parse_timestamp(START_RFC3339) == START
    assert parse_timestamp("2023-11-14T22:13:21.5Z") == START + 1.5
    assert parse_timestamp("2023-11-14T23:13:20+01:00") == START
    assert parse_timestamp("yesterday") is None
    assert parse_http_date(START_HTTP) == START
    assert parse_http_date("not a date") is None


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "7"}, START) == 7.0
    assert parse_retry_after({"retry-after": "1.5"}, START) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}, START) == 0.25
    assert parse_retry_after({"retry-after": START_HTTP}, START - 30.0) == 30.0
    assert parse_retry_after({"retry-after": START_HTTP}, START + 30.0) == 0.0  # in the past
    assert parse_retry_after({"retry-after-ms": "soon", "retry-after": "2"}, START) == 2.0
    assert parse_retry_after({"retry-after": "soon"}, START) is None
    assert parse_retry_after({}, START) is None


# --- holds after 429 -----------------------------------------------------------------


def test_a_429_with_retry_after_holds_the_deployment() -> None:
    provider, clock = limits()
    provider.observe(429, {"retry-after": "2"})
    assert provider.held_until == 2.0
    assert provider.delay() == 2.0
    clock.advance(1.5)
    assert provider.delay() == 0.5
    clock.advance(0.5)
    assert provider.delay() == 0.0
    assert provider.held_until == 0.0
    assert provider.stats().holds == 1


def test_a_429_with_an_http_date_retry_after() -> None:
    provider, _ = limits()
    provider.observe(429, {"retry-after": "Tue, 14 Nov 2023 22:13:50 GMT"})
    assert provider.delay() == 30.0


def test_a_429_without_retry_after_holds_until_the_spent_limit_resets() -> None:
    provider, _ = limits()
    provider.observe(
        429,
        {
            "x-ratelimit-limit-tokens": "10000",
            "x-ratelimit-remaining-tokens": "0",
            "x-ratelimit-reset-tokens": "6m0s",
            "x-ratelimit-remaining-requests": "40",
            "x-ratelimit-reset-requests": "1s",
        },
    )
    assert provider.held_until == 360.0


def test_a_429_with_nothing_to_go_on_holds_one_second() -> None:
    provider, _ = limits()
    provider.observe(429, {})
    assert provider.delay() == 1.0


def test_a_503_holds_only_with_retry_after() -> None:
    provider, _ = limits()
    provider.observe(503, {})
    assert provider.delay() == 0.0
    provider.observe(503, {"retry-after": "3"})
    assert provider.delay() == 3.0


def test_a_shorter_hold_does_not_cut_a_longer_one() -> None:
    provider, _ = limits()
    provider.observe(429, {"retry-after": "10"})
    provider.observe(429, {"retry-after": "1"})
    assert provider.delay() == 10.0
    assert provider.stats().holds == 2


# --- exhaustion and pacing ---------------------------------------------------------------


def test_no_requests_left_waits_for_one_to_come_back() -> None:
    provider, clock = limits()
    provider.observe(
        200,
        {
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "20s",
        },
    )
    # The quota refills continuously: 60 requests over the 20 s to the reset.
    assert provider.delay() == pytest.approx(20.0 / 60)
    clock.advance(20.0)
    assert provider.delay() == 0.0  # the window reset


def test_too_few_tokens_waits_for_the_missing_ones_to_come_back() -> None:
    provider, _ = limits()
    provider.observe(
        200,
        {
            "x-ratelimit-limit-tokens": "100000",
            "x-ratelimit-remaining-tokens": "50000",
            "x-ratelimit-reset-tokens": "30s",
        },
    )
    assert provider.delay(tokens=40_000) == 0.0
    # 10,000 missing; the 50,000 spent come back over 30 s.
    assert provider.delay(tokens=60_000) == pytest.approx(6.0)


def test_sent_requests_count_against_what_is_left() -> None:
    provider, _ = limits(pace_below=0.0)
    provider.observe(
        200,
        {
            "x-ratelimit-limit-requests": "100",
            "x-ratelimit-remaining-requests": "2",
            "x-ratelimit-reset-requests": "10s",
            "x-ratelimit-limit-tokens": "1000",
            "x-ratelimit-remaining-tokens": "900",
            "x-ratelimit-reset-tokens": "10s",
        },
    )
    provider.sent(tokens=500)
    # 400 tokens left: the 100 missing of the 600 spent come back in 10 s * 100 / 600.
    assert provider.delay(tokens=500) == pytest.approx(10.0 / 6)
    provider.sent()
    assert provider.stats().remaining == {"requests": 0, "tokens": 400}
    assert provider.delay() == pytest.approx(0.1)  # no requests left: 100 over 10 s
    provider.observe(200, {"x-ratelimit-remaining-requests": "50"})  # fresh numbers
    assert provider.delay(tokens=100) == 0.0


def test_low_remaining_spreads_requests_over_the_time_to_reset() -> None:
    provider, clock = limits(pace_below=0.1)
    provider.observe(
        200,
        {
            "x-ratelimit-limit-requests": "1000",
            "x-ratelimit-remaining-requests": "5",  # below 10 % of the limit
            "x-ratelimit-reset-requests": "10s",
        },
    )
    assert provider.delay() == 0.0  # nothing sent yet
    provider.sent()
    # 4 left over 10 s: one every 2.5 s.
    assert provider.delay() == 2.5
    clock.advance(1.0)
    # 4 left over 9 s: 2.25 s after the last send, 1 s of it gone.
    assert provider.delay() == pytest.approx(1.25)
    clock.advance(1.25)
    assert provider.delay() == pytest.approx(0.0, abs=1e-9)


def test_plenty_remaining_means_no_pacing() -> None:
    provider, _ = limits(pace_below=0.1)
    provider.observe(
        200,
        {
            "x-ratelimit-limit-requests": "1000",
            "x-ratelimit-remaining-requests": "500",
            "x-ratelimit-reset-requests": "10s",
        },
    )
    provider.sent()
    assert provider.delay() == 0.0


def test_token_pacing_scales_with_the_request_size() -> None:
    provider, _ = limits(pace_below=0.1)
    provider.observe(
        200,
        {
            "x-ratelimit-limit-tokens": "100000",
            "x-ratelimit-remaining-tokens": "5000",
            "x-ratelimit-reset-tokens": "10s",
        },
    )
    provider.sent(tokens=1000)  # 4000 left
    assert provider.delay(tokens=1000) == pytest.approx(2.5)  # a quarter of what is left
    assert provider.delay(tokens=0) == 0.0


def test_anthropic_headers() -> None:
    provider, clock = limits()
    provider.observe(
        200,
        {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": "2023-11-14T22:13:32Z",
            "anthropic-ratelimit-input-tokens-limit": "40000",
            "anthropic-ratelimit-input-tokens-remaining": "39000",
            "anthropic-ratelimit-input-tokens-reset": "2023-11-14T22:13:25Z",
            "anthropic-ratelimit-output-tokens-limit": "8000",
            "anthropic-ratelimit-output-tokens-remaining": "0",
            "anthropic-ratelimit-output-tokens-reset": "2023-11-14T22:13:40Z",
            "anthropic-ratelimit-tokens-limit": "48000",
            "anthropic-ratelimit-tokens-remaining": "39000",
            "anthropic-ratelimit-tokens-reset": "2023-11-14T22:13:25Z",
        },
    )
    assert provider.stats() == ProviderLimitStats(
        limits={"requests": 50, "tokens": 48000, "input-tokens": 40000, "output-tokens": 8000},
        remaining={"requests": 0, "tokens": 39000, "input-tokens": 39000, "output-tokens": 0},
        resets={"requests": 12.0, "tokens": 5.0, "input-tokens": 5.0, "output-tokens": 20.0},
        holds=0,
        held_for=0.0,
    )
    assert provider.delay() == 20.0  # output tokens are spent until 22:13:40
    clock.advance(20.0)
    assert provider.delay() == 0.0


def test_an_anthropic_reset_in_the_past_does_not_block() -> None:
    provider, _ = limits()
    provider.observe(
        200,
        {
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": "2023-11-14T22:00:00Z",
        },
    )
    assert provider.delay() == 0.0


# --- robustness ----------------------------------------------------------------------


def test_malformed_headers_are_ignored_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    provider, _ = limits()
    provider.observe(
        200,
        {
            "x-ratelimit-limit-requests": "1000",
            "x-ratelimit-remaining-requests": "5",
            "x-ratelimit-reset-requests": "10s",
        },
    )
    with caplog.at_level(logging.DEBUG, logger="hotpath.traffic"):
        provider.observe(
            429,
            {
                "x-ratelimit-limit-requests": "lots",
                "x-ratelimit-remaining-requests": "-3",
                "x-ratelimit-reset-requests": "soonish",
                "x-ratelimit-limit-tokens": "0",
                "anthropic-ratelimit-tokens-reset": "tomorrow",
                "retry-after": "whenever",
                "retry-after-ms": "NaN",
            },
        )
    stats = provider.stats()
    assert stats.limits == {"requests": 1000}
    assert stats.remaining == {"requests": 5}
    assert stats.resets == {"requests": 10.0}
    assert provider.held_until == 1.0  # a 429 with no usable hint: one second
    logged = caplog.text
    for name in (
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
        "x-ratelimit-limit-tokens",
        "anthropic-ratelimit-tokens-reset",
        "retry-after header 'whenever'",
        "retry-after-ms header 'NaN'",
    ):
        assert name in logged


def test_nothing_observed_means_no_delay() -> None:
    provider, _ = limits()
    assert provider.delay(tokens=10**6) == 0.0
    provider.sent(tokens=10)
    assert provider.stats() == ProviderLimitStats(
        limits={}, remaining={}, resets={}, holds=0, held_for=0.0
    )


def test_rejects_a_bad_pace_below() -> None:
    with pytest.raises(ConfigError, match=r"pace_below must be a number >= 0, got -0\.5"):
        ProviderLimits(pace_below=-0.5)
