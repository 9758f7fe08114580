"""Routing among deployments: P2C over peak EWMA, weights, cost, order, health."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from hotpath._clock import ManualClock
from hotpath._errors import ConfigError
from hotpath.traffic._router import Deployment, DeploymentLoad, Router


def make(
    *deployments: Deployment, strategy: str = "latency", seed: int = 1, decay: float = 10.0
) -> tuple[Router, ManualClock]:
    clock = ManualClock()
    router = Router(
        deployments,
        strategy=strategy,  # type: ignore[arg-type]
        decay=decay,
        clock=clock,
        rng=random.Random(seed),
    )
    return router, clock


def names(*values: str) -> list[Deployment]:
    return [Deployment(name=v) for v in values]


def run(router: Router, clock: ManualClock, latency: dict[str, float], calls: int) -> Counter[str]:
    """Sequential calls, each taking its deployment's latency, advancing the clock."""
    counts: Counter[str] = Counter()
    for _ in range(calls):
        chosen = router.pick()
        assert chosen is not None
        counts[chosen.name] += 1
        router.start(chosen.name)
        clock.advance(latency[chosen.name])
        router.finish(chosen.name, latency[chosen.name], ok=True)
    return counts


# --- latency (P2C over peak EWMA) -------------------------------------------------------


def test_p2c_prefers_the_faster_deployment_by_a_wide_margin() -> None:
    router, clock = make(*names("fast", "slow"))
    counts = run(router, clock, {"fast": 0.1, "slow": 1.0}, 2000)
    assert counts["fast"] > 0.97 * 2000
    assert counts["slow"] >= 1  # it was measured, and is re-probed now and then


def test_p2c_spreads_over_many_deployments_and_avoids_the_slow_one() -> None:
    deployments = names("a", "b", "c", "d")
    router, clock = make(*deployments, seed=3)
    latency = {"a": 0.2, "b": 0.2, "c": 0.2, "d": 2.0}
    counts = run(router, clock, latency, 3000)
    assert counts["d"] < 0.03 * 3000
    for name in "abc":
        assert counts[name] > 0.25 * 3000  # no herding onto one of the equals


def test_unmeasured_deployments_are_tried_first() -> None:
    router, clock = make(*names("a", "b"))
    router.start("a")
    clock.advance(0.5)
    router.finish("a", 0.5, ok=True)
    assert router.pick() == Deployment(name="b")


def test_an_unmeasured_deployment_already_in_use_is_not_piled_onto() -> None:
    router, _ = make(*names("a", "b"))
    router.start("a")
    router.finish("a", 0.5, ok=True)
    router.start("b")  # the first call to b is still out: nothing known yet
    assert router.pick() == Deployment(name="a")


def test_inflight_calls_weigh_on_the_score() -> None:
    router, _ = make(*names("a", "b"))
    for name, latency in (("a", 1.0), ("b", 1.5)):
        router.start(name)
        router.finish(name, latency, ok=True)
    assert router.pick() == Deployment(name="a")  # 1.0 * 1 < 1.5 * 1
    router.start("a")
    assert router.pick() == Deployment(name="b")  # 1.0 * 2 > 1.5 * 1
    assert router.snapshot()["a"].inflight == 1


def test_peak_ewma_jumps_up_at_once_and_decays_by_the_clock() -> None:
    router, clock = make(*names("a"), decay=10.0)
    router.start("a")
    router.finish("a", 0.2, ok=True)
    assert router.snapshot()["a"].ewma == 0.2
    clock.advance(1.0)
    router.finish("a", 3.0, ok=True)
    assert router.snapshot()["a"].ewma == 3.0  # the peak counts at once
    clock.advance(10.0)  # one time constant later, a fast sample
    router.finish("a", 0.2, ok=True)
    keep = math.exp(-1.0)
    assert router.snapshot()["a"].ewma == pytest.approx(3.0 * keep + 0.2 * (1 - keep))
    router.finish("a", 0.2, ok=True)  # no time passed: no weight moves to the sample
    assert router.snapshot()["a"].ewma == pytest.approx(3.0 * keep + 0.2 * (1 - keep))
    clock.advance(100.0)
    router.finish("a", 0.2, ok=True)
    assert router.snapshot()["a"].ewma == pytest.approx(0.2, abs=1e-4)


def test_a_failure_counts_as_a_penalty_latency() -> None:
    router, _ = make(*names("a", "b"))
    router.start("a")
    router.finish("a", 0.05, ok=False)
    assert router.snapshot()["a"].ewma == 1.0  # at least one second
    router.finish("a", 0.05, ok=False)
    assert router.snapshot()["a"].ewma == 2.0  # doubles while failing
    router.finish("a", 5.0, ok=False)
    assert router.snapshot()["a"].ewma == 5.0  # or the latency itself, if longer
    router.start("b")
    router.finish("b", 0.3, ok=True)
    assert Counter(d.name for d in (router.pick() for _ in range(50)) if d) == {"b": 50}


def test_failure_penalty_is_capped() -> None:
    router, _ = make(*names("a"))
    for _ in range(20):
        router.finish("a", 0.01, ok=False)
    assert router.snapshot()["a"].ewma == 60.0


def test_a_deployment_shunned_long_ago_is_tried_again() -> None:
    router, clock = make(*names("a", "b"), decay=10.0)
    router.finish("a", 0.1, ok=True)
    router.finish("b", 5.0, ok=False)
    assert router.pick() == Deployment(name="a")
    clock.advance(60.0)
    router.finish("a", 0.1, ok=True)  # a stays fresh; b's old estimate has faded
    assert router.pick() == Deployment(name="b")


# --- other strategies ----------------------------------------------------------------


def test_weighted_follows_the_weights() -> None:
    deployments = [
        Deployment(name="big", weight=3.0),
        Deployment(name="small", weight=1.0),
    ]
    router, _ = make(*deployments, strategy="weighted", seed=11)
    counts = Counter(d.name for d in (router.pick() for _ in range(8000)) if d)
    assert counts["big"] / 8000 == pytest.approx(0.75, abs=0.02)
    assert router.snapshot()["small"].picks == counts["small"]


def test_weights_bias_the_latency_strategy_among_equals() -> None:
    deployments = [Deployment(name="big", weight=4.0), Deployment(name="small", weight=1.0)]
    router, _ = make(*deployments, seed=5)
    counts = Counter(d.name for d in (router.pick() for _ in range(5000)) if d)
    # Both unmeasured (score 0): the first draw wins, so picks follow the weights.
    assert counts["big"] / 5000 == pytest.approx(0.8, abs=0.02)


def test_cost_picks_the_cheapest_usable_deployment() -> None:
    deployments = [
        Deployment(name="premium", cost=15.0),
        Deployment(name="budget", cost=0.5),
        Deployment(name="mid", cost=3.0),
    ]
    router, _ = make(*deployments, strategy="cost")
    assert router.pick() == deployments[1]
    assert router.pick(exclude={"budget"}) == deployments[2]
    assert router.pick(healthy=lambda n: n == "premium") == deployments[0]


def test_cost_ties_go_to_the_lower_latency_score() -> None:
    deployments = [Deployment(name="a", cost=1.0), Deployment(name="b", cost=1.0)]
    router, _ = make(*deployments, strategy="cost")
    assert router.pick() == deployments[0]  # all equal: config order
    router.finish("a", 2.0, ok=True)
    router.finish("b", 0.5, ok=True)
    assert router.pick() == deployments[1]


def test_order_takes_the_first_usable_in_config_order() -> None:
    router, _ = make(*names("primary", "backup", "last"), strategy="order")
    assert router.pick() == Deployment(name="primary")
    assert router.pick(exclude=["primary"]) == Deployment(name="backup")
    assert router.pick(healthy=lambda n: n == "last") == Deployment(name="last")


# --- exclusion and health ------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["latency", "weighted", "cost", "order"])
def test_exclude_and_health_filter_every_strategy(strategy: str) -> None:
    router, _ = make(*names("a", "b", "c"), strategy=strategy)
    for _ in range(50):
        chosen = router.pick(exclude={"a"}, healthy=lambda n: n != "b")
        assert chosen == Deployment(name="c")
    assert router.pick(exclude={"a", "c"}, healthy=lambda n: n != "b") is None
    assert router.pick(exclude={"a", "b", "c"}) is None


def test_snapshot_reports_every_deployment() -> None:
    router, _ = make(*names("a", "b"), strategy="order")
    router.pick()
    router.start("a")
    assert router.snapshot() == {
        "a": DeploymentLoad(ewma=0.0, inflight=1, picks=1),
        "b": DeploymentLoad(ewma=0.0, inflight=0, picks=0),
    }
    router.finish("a", 0.25, ok=True)
    router.finish("a", 0.25, ok=True)  # an extra finish never drives inflight negative
    assert router.snapshot()["a"] == DeploymentLoad(ewma=0.25, inflight=0, picks=1)


# --- validation ----------------------------------------------------------------------


def test_rejects_an_empty_list() -> None:
    with pytest.raises(ConfigError, match=r"deployments must not be empty, got \[\]"):
        Router([])


def test_rejects_duplicate_names() -> None:
    with pytest.raises(ConfigError, match="duplicate name 'a'"):
        Router(names("a", "b", "a"))


def test_rejects_an_unknown_strategy() -> None:
    with pytest.raises(
        ConfigError, match=r"strategy must be one of latency, weighted, cost, order, got 'fastest'"
    ):
        Router(names("a"), strategy="fastest")  # type: ignore[arg-type]


def test_rejects_something_that_is_not_a_deployment() -> None:
    with pytest.raises(ConfigError, match="must hold Deployment objects, got 'a'"):
        Router(["a"])  # type: ignore[list-item]


def test_rejects_a_bad_decay() -> None:
    with pytest.raises(ConfigError, match="decay must be a positive number, got 0"):
        Router(names("a"), decay=0)


def test_unknown_deployment_names_are_rejected() -> None:
    router, _ = make(*names("a"))
    with pytest.raises(ConfigError, match="unknown deployment 'zz'"):
        router.start("zz")
    with pytest.raises(ConfigError, match="unknown deployment 'zz'"):
        router.finish("zz", 1.0, ok=True)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": ""}, "name must be a non-empty string, got ''"),
        ({"name": "a", "weight": 0.0}, "weight must be a positive number, got 0.0"),
        ({"name": "a", "cost": -1.0}, "cost must be a number >= 0, got -1.0"),
    ],
)
def test_deployment_rejects_bad_fields(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        Deployment(**options)  # type: ignore[arg-type]
