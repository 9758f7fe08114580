"""Model selection: scores on cost, quality and speed, the long-prompt rule, context
windows, the cheap tier, unknown prices, exclusion and the checks of the config."""

from __future__ import annotations

import math
from typing import Any

import pytest

from hotpath._clock import ManualClock
from hotpath._errors import ConfigError
from hotpath.cost._select import Candidate, Choice, ModelSelector, Weights

# Prices in USD per million tokens.
BIG = Candidate(name="big", quality=0.9, input_price=5.0, output_price=15.0)
MID = Candidate(name="mid", quality=0.8, input_price=0.5, output_price=1.5)
SMALL = Candidate(name="small", quality=0.5, input_price=0.15, output_price=0.6)


def make(*candidates: Candidate, **options: Any) -> tuple[ModelSelector, ManualClock]:
    clock = ManualClock()
    return ModelSelector(candidates, clock=clock, **options), clock


def model(name: str, quality: float = 0.8, price: float | None = 1.0, **more: Any) -> Candidate:
    return Candidate(name=name, quality=quality, input_price=price, output_price=price, **more)


# --- scores -----------------------------------------------------------------------------


def test_default_weights_worked_example_picks_the_cheap_model() -> None:
    selector, _ = make(BIG, MID, SMALL)
    # 1000 prompt + 256 (expected) completion tokens, in micro-dollars:
    #   big   1000*5.00 + 256*15.0 = 8840
    #   mid   1000*0.50 + 256*1.50 =  884
    #   small 1000*0.15 + 256*0.60 =  303.6
    # cost scores: 303.6/8840 = 0.034344, 303.6/884 = 0.343439, 1
    # quality scores: 0.9/0.9 = 1, 0.8/0.9 = 0.888889, 0.5/0.9 = 0.555556
    # speed: nothing observed, 1 each; weights 0.4 / 0.4 / 0.2 (sum 1):
    #   big   0.4*0.034344 + 0.4*1        + 0.2 = 0.613738
    #   mid   0.4*0.343439 + 0.4*0.888889 + 0.2 = 0.692931
    #   small 0.4*1        + 0.4*0.555556 + 0.2 = 0.822222
    choice = selector.choose(prompt_tokens=1000)
    assert choice.model == "small"
    assert choice.reason == "score"
    assert choice.score == pytest.approx(0.822222, abs=1e-6)
    assert choice.scores == pytest.approx(
        {"big": 0.613738, "mid": 0.692931, "small": 0.822222}, abs=1e-6
    )


def test_default_weights_worked_example_picks_the_middle_model() -> None:
    weak = Candidate(name="small", quality=0.2, input_price=0.15, output_price=0.6)
    selector, _ = make(BIG, MID, weak)
    # As above, but small's quality score is 0.2/0.9 = 0.222222:
    #   small 0.4*1 + 0.4*0.222222 + 0.2 = 0.688889 < mid's 0.692931
    choice = selector.choose(prompt_tokens=1000)
    assert choice == Choice("mid", "score", choice.score, choice.scores)
    assert choice.score == pytest.approx(0.692931, abs=1e-6)
    assert choice.scores["small"] == pytest.approx(0.688889, abs=1e-6)


def test_weights_all_on_cost_pick_the_cheapest() -> None:
    selector, _ = make(BIG, MID, SMALL, weights=Weights(cost=1.0, quality=0.0, speed=0.0))
    choice = selector.choose(prompt_tokens=1000)
    assert choice.model == "small"
    assert choice.scores == pytest.approx({"big": 303.6 / 8840, "mid": 303.6 / 884, "small": 1.0})


def test_weights_all_on_quality_pick_the_best() -> None:
    selector, _ = make(BIG, MID, SMALL, weights=Weights(cost=0.0, quality=1.0, speed=0.0))
    choice = selector.choose(prompt_tokens=1000)
    assert choice.model == "big"
    assert choice.scores == pytest.approx({"big": 1.0, "mid": 0.8 / 0.9, "small": 0.5 / 0.9})


def test_only_weight_ratios_matter() -> None:
    one, _ = make(BIG, MID, SMALL)
    ten, _ = make(BIG, MID, SMALL, weights=Weights(cost=4.0, quality=4.0, speed=2.0))
    assert ten.choose(prompt_tokens=1000).scores == pytest.approx(
        one.choose(prompt_tokens=1000).scores
    )


def test_completion_tokens_replace_the_expected_completion() -> None:
    cheap_in = Candidate(name="cheap_in", quality=0.8, input_price=1.0, output_price=10.0)
    cheap_out = Candidate(name="cheap_out", quality=0.8, input_price=10.0, output_price=1.0)
    selector, _ = make(cheap_in, cheap_out, weights=Weights(cost=1.0, quality=0.0, speed=0.0))
    # 100 prompt + 4000 completion: 100 + 40000 vs 1000 + 4000
    assert selector.choose(prompt_tokens=100, completion_tokens=4000).model == "cheap_out"
    # 4000 prompt + 10 completion: 4000 + 100 vs 40000 + 10
    assert selector.choose(prompt_tokens=4000, completion_tokens=10).model == "cheap_in"


def test_equal_scores_go_to_the_cheaper_then_the_lower_name() -> None:
    quality_only = Weights(cost=0.0, quality=1.0, speed=0.0)
    selector, _ = make(model("b", price=1.0), model("a", price=2.0), weights=quality_only)
    assert selector.choose(prompt_tokens=10).model == "b"
    selector, _ = make(model("b"), model("a"), weights=quality_only)
    assert selector.choose(prompt_tokens=10).model == "a"


def test_free_models_score_full_cost_and_so_does_everyone_when_all_are_free() -> None:
    cost_only = Weights(cost=1.0, quality=0.0, speed=0.0)
    selector, _ = make(model("free", price=0.0), model("paid", price=1.0), weights=cost_only)
    assert selector.choose(prompt_tokens=10).scores == {"free": 1.0, "paid": 0.0}
    selector, _ = make(model("a", price=0.0), model("b", price=0.0), weights=cost_only)
    assert selector.choose(prompt_tokens=10).scores == {"a": 1.0, "b": 1.0}
    # No tokens at all: every expected cost is 0.
    selector, _ = make(model("a", price=1.0), model("b", price=3.0), weights=cost_only)
    assert selector.choose(completion_tokens=0).scores == {"a": 1.0, "b": 1.0}


def test_quality_scores_are_all_full_when_every_quality_is_zero() -> None:
    selector, _ = make(model("a", quality=0.0), model("b", quality=0.0))
    assert selector.choose().scores == pytest.approx({"a": 1.0, "b": 1.0})


# --- speed ------------------------------------------------------------------------------


def test_observed_latency_changes_the_choice() -> None:
    selector, _ = make(model("a"), model("b"))
    assert selector.choose(prompt_tokens=100).model == "a"  # a tie, broken by name
    selector.observe("a", 2.0)
    selector.observe("b", 0.5)
    # speed scores: a 0.5/2.0 = 0.25, b 1; totals a 0.4 + 0.4 + 0.2*0.25 = 0.85, b 1.0
    choice = selector.choose(prompt_tokens=100)
    assert choice.model == "b"
    assert choice.scores == pytest.approx({"a": 0.85, "b": 1.0})


def test_a_model_never_observed_gets_full_speed_so_it_is_tried() -> None:
    selector, _ = make(model("a"), model("b"))
    selector.observe("a", 0.1)
    choice = selector.choose(prompt_tokens=100)
    assert choice.scores == pytest.approx({"a": 1.0, "b": 1.0})


def test_an_old_slow_sample_fades_from_the_average() -> None:
    selector, clock = make(model("a"), model("b"))
    selector.observe("a", 2.0)
    selector.observe("b", 0.5)
    clock.advance(60.0)
    selector.observe("a", 0.4)
    selector.observe("b", 0.5)
    # keep = exp(-60/10) = 0.00248: a = 2.0*keep + 0.4*(1 - keep) = 0.40397
    assert selector.latency("a") == pytest.approx(2.0 * math.exp(-6) + 0.4 * (1 - math.exp(-6)))
    assert selector.latency("b") == pytest.approx(0.5)
    assert selector.choose(prompt_tokens=100).model == "a"


def test_a_recent_slow_sample_still_weighs() -> None:
    selector, clock = make(model("a"), model("b"))
    selector.observe("a", 2.0)
    selector.observe("b", 0.5)
    clock.advance(1.0)
    selector.observe("a", 0.4)
    # keep = exp(-1/10) = 0.904837: a = 1.80967 + 0.03807 = 1.84774
    assert selector.latency("a") == pytest.approx(2.0 * math.exp(-0.1) + 0.4 * (1 - math.exp(-0.1)))
    assert selector.choose(prompt_tokens=100).model == "b"


def test_a_model_slow_long_ago_is_tried_again() -> None:
    half = Weights(cost=0.0, quality=0.5, speed=0.5)
    selector, clock = make(model("a", quality=0.9), model("b", quality=0.8), weights=half)
    selector.observe("a", 4.0)
    selector.observe("b", 1.0)
    # a: 0.5*1 + 0.5*0.25 = 0.625; b: 0.5*0.8/0.9 + 0.5*1 = 0.944444
    assert selector.choose().model == "b"
    clock.advance(10.0)
    selector.observe("b", 1.0)
    # a's estimate is 10 s old, trusted exp(-1) = 0.367879:
    # speed 1 - 0.367879*0.75 = 0.724091, total 0.862045 < 0.944444
    assert selector.choose().scores["a"] == pytest.approx(0.862045, abs=1e-6)
    assert selector.choose().model == "b"
    clock.advance(20.0)
    selector.observe("b", 1.0)
    # 30 s old, trusted exp(-3) = 0.049787: speed 0.962660, total 0.981330 > 0.944444
    choice = selector.choose()
    assert choice.model == "a"
    assert choice.score == pytest.approx(0.981330, abs=1e-6)
    assert selector.latency("a") == 4.0  # the estimate itself is unchanged


def test_latency_of_unknown_or_unobserved_models_is_none_and_bad_samples_are_ignored() -> None:
    selector, _ = make(model("a"), model("b"))
    assert selector.latency("a") is None
    assert selector.latency("nope") is None
    selector.observe("nope", 1.0)
    for bad in (0.0, -1.0, math.nan, math.inf):
        selector.observe("a", bad)
    assert selector.latency("a") is None
    selector.observe("a", 0.3)
    assert selector.latency("a") == 0.3


def test_speed_weight_zero_ignores_latency() -> None:
    selector, _ = make(model("a"), model("b"), weights=Weights(speed=0.0))
    selector.observe("a", 10.0)
    selector.observe("b", 0.1)
    assert selector.choose().model == "a"


# --- long prompts -----------------------------------------------------------------------


def long_setup() -> ModelSelector:
    selector, _ = make(
        model("short", quality=0.9, price=0.5, context_window=16_000),
        model("long", quality=0.7, price=3.0, context_window=200_000),
        model("huge", quality=0.6, price=9.0),
        long_prompt_tokens=8_000,
        long_prompt_model="long",
    )
    return selector


def test_a_long_prompt_goes_to_the_long_prompt_model() -> None:
    choice = long_setup().choose(prompt_tokens=9_000)
    assert choice.model == "long"
    assert choice.reason == "long_prompt"
    assert choice.score == choice.scores["long"]
    assert set(choice.scores) == {"short", "long", "huge"}


def test_a_prompt_at_the_threshold_is_not_long() -> None:
    choice = long_setup().choose(prompt_tokens=8_000)
    assert choice.model == "short"
    assert choice.reason == "score"


def test_the_long_prompt_model_is_skipped_when_excluded_or_too_small() -> None:
    selector = long_setup()
    excluded = selector.choose(prompt_tokens=9_000, exclude={"long"})
    assert excluded.model == "short"
    assert excluded.reason == "score"
    too_long = selector.choose(prompt_tokens=250_000)
    assert too_long.model == "huge"  # the only one with room (its window is unknown)
    assert too_long.reason == "score"
    assert set(too_long.scores) == {"huge"}


# --- context windows --------------------------------------------------------------------


def test_models_whose_window_is_too_small_are_not_eligible() -> None:
    selector, _ = make(
        model("small", price=0.1, context_window=4_096),
        model("big", price=1.0, context_window=128_000),
    )
    # 3840 + 256 = 4096 fits exactly; the cheaper model wins.
    assert selector.choose(prompt_tokens=3_840).model == "small"
    choice = selector.choose(prompt_tokens=3_841)
    assert choice.model == "big"
    assert set(choice.scores) == {"big"}
    # The request's own completion ceiling replaces the expected 256.
    assert selector.choose(prompt_tokens=3_000, completion_tokens=2_000).model == "big"
    assert selector.choose(prompt_tokens=3_000, completion_tokens=1_096).model == "small"


def test_when_nothing_fits_the_largest_window_is_chosen() -> None:
    selector, _ = make(
        model("a", context_window=4_096),
        model("b", context_window=8_192),
        model("c", context_window=2_048),
    )
    choice = selector.choose(prompt_tokens=10_000)
    assert choice.model == "b"
    assert choice.reason == "only_fit"
    assert set(choice.scores) == {"b"}


def test_an_unknown_window_always_fits() -> None:
    selector, _ = make(model("a", price=0.1, context_window=4_096), model("b", price=5.0))
    choice = selector.choose(prompt_tokens=1_000_000)
    assert choice.model == "b"
    assert choice.reason == "score"


# --- cheap tier -------------------------------------------------------------------------


def test_cheap_tier_takes_the_cheapest_model_of_enough_quality() -> None:
    selector, _ = make(BIG, MID, SMALL, min_quality=0.7)
    choice = selector.choose(prompt_tokens=1000, tier="cheap")
    assert choice.model == "mid"
    assert choice.reason == "cheap"
    assert choice.score == pytest.approx(0.692931, abs=1e-6)  # its score, as in the example
    assert set(choice.scores) == {"big", "mid", "small"}


def test_cheap_tier_without_a_floor_takes_the_cheapest() -> None:
    selector, _ = make(BIG, MID, SMALL)
    assert selector.choose(prompt_tokens=1000, tier="cheap").model == "small"


def test_cheap_tier_falls_back_to_all_when_none_is_good_enough() -> None:
    selector, _ = make(BIG, MID, SMALL, min_quality=0.95)
    assert selector.choose(prompt_tokens=1000, tier="cheap").model == "small"


def test_cheap_tier_ties_go_to_the_better_then_the_lower_name() -> None:
    selector, _ = make(model("b", quality=0.5), model("c", quality=0.7), model("a", quality=0.5))
    assert selector.choose(tier="cheap").model == "c"
    selector, _ = make(model("b", quality=0.5), model("a", quality=0.5))
    assert selector.choose(tier="cheap").model == "a"


def test_unknown_tier_is_rejected() -> None:
    selector, _ = make(BIG)
    with pytest.raises(ConfigError, match=r"tier must be 'default' or 'cheap', got 'premium'"):
        selector.choose(tier="premium")


# --- unknown prices ---------------------------------------------------------------------


def test_an_unknown_price_is_never_the_cheapest_unless_all_are_unknown() -> None:
    selector, _ = make(model("mystery", price=None), model("known", price=100.0))
    assert selector.choose(prompt_tokens=100, tier="cheap").model == "known"
    selector, _ = make(model("x", quality=0.6, price=None), model("y", quality=0.9, price=None))
    assert selector.choose(prompt_tokens=100, tier="cheap").model == "y"


def test_one_unknown_price_makes_the_cost_unknown() -> None:
    half = Candidate(name="half", quality=0.8, input_price=0.0, output_price=None)
    selector, _ = make(half, model("known", price=100.0))
    assert selector.choose(prompt_tokens=100, tier="cheap").model == "known"


def test_an_unknown_price_scores_zero_on_cost() -> None:
    mystery = model("mystery", quality=1.0, price=None)
    known = model("known", quality=0.5, price=1.0)
    selector, _ = make(mystery, known)
    # mystery: 0.4*0 + 0.4*1 + 0.2 = 0.6; known: 0.4*1 + 0.4*0.5 + 0.2 = 0.8
    choice = selector.choose(prompt_tokens=100)
    assert choice.model == "known"
    assert choice.scores == pytest.approx({"mystery": 0.6, "known": 0.8})
    by_quality, _ = make(mystery, known, weights=Weights(cost=0.0, quality=1.0, speed=0.0))
    assert by_quality.choose(prompt_tokens=100).model == "mystery"


def test_all_prices_unknown_scores_on_quality_and_speed() -> None:
    selector, _ = make(model("a", quality=0.5, price=None), model("b", quality=1.0, price=None))
    # a: 0 + 0.4*0.5 + 0.2 = 0.4; b: 0 + 0.4 + 0.2 = 0.6
    choice = selector.choose(prompt_tokens=100)
    assert choice.model == "b"
    assert choice.scores == pytest.approx({"a": 0.4, "b": 0.6})


# --- exclude ----------------------------------------------------------------------------


def test_excluded_models_are_not_chosen_or_scored() -> None:
    selector, _ = make(BIG, MID, SMALL)
    choice = selector.choose(prompt_tokens=1000, exclude=["small"])
    assert choice.model == "mid"
    assert set(choice.scores) == {"big", "mid"}
    assert selector.choose(prompt_tokens=1000, exclude={"small", "mid"}).model == "big"
    assert selector.choose(prompt_tokens=1000, tier="cheap", exclude=("small",)).model == "mid"


def test_excluding_every_model_ignores_the_exclusion() -> None:
    selector, _ = make(BIG, MID, SMALL)
    choice = selector.choose(prompt_tokens=1000, exclude={"big", "mid", "small"})
    assert choice.model == "small"
    assert set(choice.scores) == {"big", "mid", "small"}


def test_excluded_models_are_not_the_only_fit() -> None:
    selector, _ = make(model("a", context_window=4_096), model("b", context_window=8_192))
    choice = selector.choose(prompt_tokens=10_000, exclude={"b"})
    assert choice.model == "a"
    assert choice.reason == "only_fit"


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt_tokens": -1}, "prompt_tokens must be >= 0, got -1"),
        ({"completion_tokens": -5}, "completion_tokens must be >= 0, got -5"),
    ],
)
def test_negative_token_counts_are_rejected(kwargs: dict[str, Any], message: str) -> None:
    selector, _ = make(BIG)
    with pytest.raises(ConfigError) as info:
        selector.choose(**kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("candidate", "message"),
    [
        (
            model("gpt-4o", quality=1.5),
            "candidates[gpt-4o].quality must be a number in [0, 1], got 1.5",
        ),
        (
            model("gpt-4o", quality=-0.1),
            "candidates[gpt-4o].quality must be a number in [0, 1], got -0.1",
        ),
        (
            model("gpt-4o", quality=math.nan),
            "candidates[gpt-4o].quality must be a number in [0, 1], got nan",
        ),
        (
            model("gpt-4o", quality=True),
            "candidates[gpt-4o].quality must be a number in [0, 1], got True",
        ),
        (
            Candidate(name="gpt-4o", quality=0.5, input_price=-1.0, output_price=1.0),
            "candidates[gpt-4o].input_price must be a number >= 0, got -1.0",
        ),
        (
            Candidate(name="gpt-4o", quality=0.5, input_price=1.0, output_price=math.inf),
            "candidates[gpt-4o].output_price must be a number >= 0, got float inf",
        ),
        (
            model("gpt-4o", context_window=0),
            "candidates[gpt-4o].context_window must be an int >= 1, got 0",
        ),
        (
            model("gpt-4o", context_window=8192.0),
            "candidates[gpt-4o].context_window must be an int >= 1, got 8192.0",
        ),
        (model(""), "candidates[0].name must be a non-empty string, got ''"),
    ],
)
def test_bad_candidates_are_rejected(candidate: Candidate, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ModelSelector([candidate])
    assert str(info.value) == message


def test_candidates_must_be_candidates_with_unique_names() -> None:
    with pytest.raises(ConfigError) as info:
        ModelSelector([])
    assert str(info.value) == "candidates must not be empty, got []"
    with pytest.raises(ConfigError) as info:
        ModelSelector([BIG, "gpt-4o"])  # type: ignore[list-item]
    assert str(info.value) == "candidates[1] must be a Candidate, got 'gpt-4o'"
    with pytest.raises(ConfigError) as info:
        ModelSelector([BIG, MID, BIG])
    assert str(info.value) == "candidates[big].name: duplicate name 'big'"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"long_prompt_tokens": 1000, "long_prompt_model": "gpt-5"},
            "long_prompt_model must be one of the candidates (big, mid), got 'gpt-5'",
        ),
        (
            {"long_prompt_model": "big"},
            "long_prompt_tokens and long_prompt_model go together, got "
            "long_prompt_tokens=None, long_prompt_model='big'",
        ),
        (
            {"long_prompt_tokens": 1000},
            "long_prompt_tokens and long_prompt_model go together, got "
            "long_prompt_tokens=1000, long_prompt_model=None",
        ),
        (
            {"long_prompt_tokens": 0, "long_prompt_model": "big"},
            "long_prompt_tokens must be an int >= 1, got 0",
        ),
        ({"min_quality": 1.2}, "min_quality must be a number in [0, 1], got 1.2"),
        ({"min_quality": -0.5}, "min_quality must be a number in [0, 1], got -0.5"),
        (
            {"expected_completion_tokens": 0},
            "expected_completion_tokens must be an int >= 1, got 0",
        ),
        ({"decay": 0.0}, "decay must be a positive number, got 0.0"),
        ({"weights": (1, 1, 1)}, "weights must be a Weights, got (1, 1, 1)"),
    ],
)
def test_bad_options_are_rejected(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ModelSelector([BIG, MID], **options)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"cost": -1.0}, "weights.cost must be a number >= 0, got -1.0"),
        ({"quality": math.nan}, "weights.quality must be a number >= 0, got float nan"),
        ({"speed": "fast"}, "weights.speed must be a number >= 0, got str 'fast'"),
        (
            {"cost": 0, "quality": 0, "speed": 0},
            "weights must not all be 0, got Weights(cost=0, quality=0, speed=0)",
        ),
    ],
)
def test_bad_weights_are_rejected(weights: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Weights(**weights)
    assert str(info.value) == message


def test_repr_names_the_candidates_and_weights() -> None:
    selector, _ = make(BIG, MID)
    assert repr(selector) == (
        "ModelSelector([big, mid], weights=Weights(cost=0.4, quality=0.4, speed=0.2))"
    )
    assert selector.candidates == (BIG, MID)
    assert selector.weights == Weights()
