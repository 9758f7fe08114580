"""What the anomaly detectors watch and how they judge: :class:`DetectorSettings`,
and what they report: :class:`Alert`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from hotpath._errors import ConfigError
from hotpath._options import check_count, check_non_negative, check_positive, check_text

__all__ = ["SIGNALS", "Alert", "DetectorSettings", "Direction", "Signal"]

Signal: TypeAlias = Literal["latency", "error_rate", "hit_rate", "spend_rate"]
Direction: TypeAlias = Literal["up", "down"]
SIGNALS: tuple[Signal, ...] = ("latency", "error_rate", "hit_rate", "spend_rate")
_DIRECTIONS: tuple[Direction, ...] = ("up", "down")
_METHODS = ("cusum", "zscore")


@dataclass(frozen=True, slots=True)
class Alert:
    """A shift of ``signal`` on ``key`` raised, or cleared.

    ``value`` is the recent level (of the window that raised or cleared it),
    ``baseline`` the level it departed from, both in the signal's units: seconds
    (the window's geometric-mean latency), a fraction (error and hit rate) or USD
    per second (spend rate). ``score`` is the detector's statistic: the CUSUM sum
    (method ``cusum``) or the window's z-score (``zscore``, and every ``cleared``
    alert). ``at`` is the wall-clock time (``clock.now()``).
    """

    signal: str
    key: str
    direction: Literal["up", "down"]
    value: float
    baseline: float
    score: float
    at: float
    kind: Literal["raised", "cleared"]


@dataclass(frozen=True, kw_only=True, slots=True)
class DetectorSettings:
    """How every detector judges its windows (defaults in brackets; a window is the
    monitor's ``window``, 5 s by default). The defaults are the measured choice of
    docs/anomaly.md.

    ``method`` ["cusum"]: ``"cusum"`` or ``"zscore"``. ``cusum_threshold`` [8.0] and
    ``cusum_slack`` [0.6]: the CUSUM's decision limit ``h`` and reference ``k``, in
    score units. ``z_threshold`` [2.5] and ``raise_after`` [2]: the zscore method
    raises after that many windows in a row beyond the threshold. ``clear_below``
    [2.0] and ``clear_after`` [3]: an alert clears after that many windows in a row
    scoring under ``clear_below`` toward the shift. ``warmup`` [24]: judged windows
    that only learn. ``min_count`` [10]: observations a window needs to be judged;
    ``max_merge`` [6]: windows a sparse one is carried into the next before its data
    is dropped. ``alpha`` [0.02]: weight of a window in the baseline and the noise
    estimates (a time constant of 50 windows). ``accept_after`` [1800.0]: seconds an
    alert stands before its level becomes the new baseline. ``decorrelate`` [True]:
    discount scores by their learnt lag-1 autocorrelation. ``watch``: the
    ``"signal:direction"`` pairs that raise alerts [latency up, error rate up, hit
    rate down, spend rate up].

    The least window-to-window spread assumed, i.e. the size of a change not worth an
    alert however many requests show it: ``latency_spread`` [0.1] and
    ``spend_spread`` [0.3] in log units (0.1: about 10%); ``rate_spread`` [0.15] as a
    fraction of the rarer outcome's rate (0.15 points at an error rate of 1%, 4.5
    points at a hit rate of 70%).
    """

    method: Literal["cusum", "zscore"] = "cusum"
    cusum_threshold: float = 8.0
    cusum_slack: float = 0.6
    z_threshold: float = 2.5
    raise_after: int = 2
    clear_below: float = 2.0
    clear_after: int = 3
    warmup: int = 24
    min_count: int = 10
    max_merge: int = 6
    alpha: float = 0.02
    accept_after: float = 1800.0
    decorrelate: bool = True
    watch: tuple[str, ...] = ("latency:up", "error_rate:up", "hit_rate:down", "spend_rate:up")
    latency_spread: float = 0.1
    rate_spread: float = 0.15
    spend_spread: float = 0.3

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise ConfigError(
                f"DetectorSettings.method must be one of {_METHODS}, got {self.method!r}"
            )
        for name in ("cusum_threshold", "z_threshold", "clear_below", "accept_after"):
            check_positive(getattr(self, name), f"DetectorSettings.{name}")
        for name in ("cusum_slack", "latency_spread", "rate_spread", "spend_spread"):
            check_non_negative(getattr(self, name), f"DetectorSettings.{name}")
        for name in ("raise_after", "clear_after", "min_count", "max_merge"):
            check_count(getattr(self, name), f"DetectorSettings.{name}")
        check_count(self.warmup, "DetectorSettings.warmup", minimum=2)
        if not isinstance(self.decorrelate, bool):
            raise ConfigError(
                f"DetectorSettings.decorrelate must be a bool, got {self.decorrelate!r}"
            )
        alpha = check_positive(self.alpha, "DetectorSettings.alpha")
        if alpha >= 1:
            raise ConfigError(f"DetectorSettings.alpha must be in (0, 1), got {self.alpha!r}")
        if not isinstance(self.watch, tuple):
            raise ConfigError(
                f"DetectorSettings.watch must be a tuple of 'signal:direction', got {self.watch!r}"
            )
        for item in self.watch:
            signal, _, direction = check_text(item, "DetectorSettings.watch[]").partition(":")
            if signal not in SIGNALS or direction not in _DIRECTIONS:
                raise ConfigError(
                    "DetectorSettings.watch[] must be 'signal:direction' with a signal in "
                    f"{SIGNALS} and a direction in {_DIRECTIONS}, got {item!r}"
                )

    def watches(self, signal: Signal, direction: Direction) -> bool:
        """Whether a shift of ``signal`` in ``direction`` raises an alert."""
        return f"{signal}:{direction}" in self.watch
