"""What a load run sends and how: :class:`LoadConfig` and :class:`WorkloadConfig`.

Both are frozen, keyword-only value objects validated on construction: a bad
value raises :class:`~hotpath.ConfigError` naming the field and showing the value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

from hotpath._errors import ConfigError
from hotpath._options import check_count, check_non_negative, check_positive, check_text

__all__ = [
    "Arrivals",
    "LoadConfig",
    "WorkloadConfig",
    "WorkloadKind",
    "parse_rate",
]

Arrivals = Literal["poisson", "uniform"]
WorkloadKind = Literal["zipf", "paraphrase", "long-context", "agent"]

#: Distinct prompts (zipf), meanings (paraphrase), documents (long-context) or
#: session scripts (agent) when ``WorkloadConfig.prompts`` is not given.
DEFAULT_POOL: dict[str, int] = {"zipf": 1000, "paraphrase": 200, "long-context": 20, "agent": 100}

_PER = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0}


def _check_seed(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an int, got {value!r}")


def parse_rate(text: str) -> float:
    """Requests per second from ``"200"``, ``"200/s"`` or ``"12000/m"`` (per minute).

    Raises :class:`ConfigError` showing the text for anything else, zero included.
    """
    count, _, unit = text.strip().lower().partition("/")
    per = _PER.get(unit.strip())
    try:
        value = float(count)
    except ValueError:
        value = math.nan
    if per is None or not (math.isfinite(value) and value > 0):
        raise ConfigError(
            f"rate: expected requests per second like '200/s' or '600/m', got {text!r}"
        )
    return value / per


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadConfig:
    """How requests are sent.

    With ``rate`` (requests per second) the run is an **open loop**: request *i* is
    due at a fixed offset from the start (``arrivals``: exponential gaps, i.e.
    Poisson, or evenly spaced), is sent then however the earlier ones fare, and its
    latency counts from that intended time. Without it the run is a **closed loop**:
    ``concurrency`` workers each send a request, wait for its answer and send the
    next.

    The run measures ``duration`` seconds after ``warmup`` seconds whose requests
    are sent but not counted; with ``requests`` it also stops after that many
    measured requests (``duration=None``: only then). ``timeout`` bounds each
    request; ``max_in_flight`` bounds an open loop's open requests (and
    connections): past it, requests wait for a slot, which shows as send lag and in
    their latency, never as a gap. ``seed`` draws the arrival times.
    """

    rate: float | None = None
    arrivals: Arrivals = "poisson"
    concurrency: int = 32
    duration: float | None = 10.0
    requests: int | None = None
    warmup: float = 2.0
    timeout: float = 60.0
    max_in_flight: int = 1024
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rate is not None:
            check_positive(self.rate, "LoadConfig.rate")
        if self.arrivals not in get_args(Arrivals):
            raise ConfigError(
                f"LoadConfig.arrivals must be one of {list(get_args(Arrivals))}, "
                f"got {self.arrivals!r}"
            )
        check_count(self.concurrency, "LoadConfig.concurrency")
        if self.duration is not None:
            check_positive(self.duration, "LoadConfig.duration")
        if self.requests is not None:
            check_count(self.requests, "LoadConfig.requests")
        if self.duration is None and self.requests is None:
            raise ConfigError("LoadConfig: give a duration, a number of requests, or both")
        check_non_negative(self.warmup, "LoadConfig.warmup")
        check_positive(self.timeout, "LoadConfig.timeout")
        check_count(self.max_in_flight, "LoadConfig.max_in_flight")
        _check_seed(self.seed, "LoadConfig.seed")

    @property
    def mode(self) -> Literal["open", "closed"]:
        return "closed" if self.rate is None else "open"

    def describe(self) -> str:
        """One line: ``open loop, 200 req/s (poisson), 10 s after a 2 s warm-up``."""
        if self.rate is None:
            how = f"closed loop, concurrency {self.concurrency}"
        else:
            how = f"open loop, {self.rate:g} req/s ({self.arrivals} arrivals)"
        parts = []
        if self.duration is not None:
            parts.append(f"{self.duration:g} s")
        if self.requests is not None:
            parts.append(f"{self.requests:,} requests")
        warm = f" after a {self.warmup:g} s warm-up" if self.warmup else ""
        return f"{how}, {' or '.join(parts)}{warm}"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadConfig:
    """What is sent. ``kind``:

    - ``"zipf"``: ``prompts`` distinct agent prompts drawn with Zipf weights
      (exponent ``zipf``), as in ``hotpath demo``;
    - ``"paraphrase"``: ``prompts`` meanings drawn with Zipf weights, each sent in
      one of 72 wordings (templated rewordings, polite prefixes and suffixes): same
      meaning, different text;
    - ``"long-context"``: ``prompts`` documents of ``context_tokens`` tokens each,
      drawn with Zipf weights, each with a question;
    - ``"agent"``: ``sessions`` conversations at a time, each ``turns`` calls long,
      whose context grows by a tool call and its result every turn; the scripts
      are drawn from ``prompts`` with Zipf weights.

    ``prompts=None`` takes the kind's default (:data:`DEFAULT_POOL`). A share
    ``stream_share`` of the requests stream. ``max_tokens`` is sent as
    ``max_tokens`` when given. ``seed`` fixes the whole sequence.
    """

    kind: WorkloadKind = "zipf"
    model: str = "gpt-4o-mini"
    prompts: int | None = None
    zipf: float = 1.1
    stream_share: float = 0.3
    context_tokens: int = 8000
    sessions: int = 16
    turns: int = 6
    max_tokens: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in get_args(WorkloadKind):
            raise ConfigError(
                f"WorkloadConfig.kind must be one of {list(get_args(WorkloadKind))}, "
                f"got {self.kind!r}"
            )
        check_text(self.model, "WorkloadConfig.model")
        if self.prompts is not None:
            check_count(self.prompts, "WorkloadConfig.prompts")
        check_non_negative(self.zipf, "WorkloadConfig.zipf")
        share = check_non_negative(self.stream_share, "WorkloadConfig.stream_share")
        if share > 1:
            raise ConfigError(f"WorkloadConfig.stream_share must be in [0, 1], got {share!r}")
        check_count(self.context_tokens, "WorkloadConfig.context_tokens", minimum=16)
        check_count(self.sessions, "WorkloadConfig.sessions")
        check_count(self.turns, "WorkloadConfig.turns")
        if self.max_tokens is not None:
            check_count(self.max_tokens, "WorkloadConfig.max_tokens")
        _check_seed(self.seed, "WorkloadConfig.seed")

    @property
    def pool(self) -> int:
        """The number of distinct prompts, meanings, documents or scripts."""
        return self.prompts if self.prompts is not None else DEFAULT_POOL[self.kind]

    def describe(self) -> str:
        """One line naming the workload and its sizes."""
        what = {
            "zipf": f"{self.pool:,} prompts",
            "paraphrase": f"{self.pool:,} meanings x 72 wordings",
            "long-context": f"{self.pool:,} documents of {self.context_tokens:,} tokens",
            "agent": f"{self.sessions} sessions at a time of {self.turns} turns, "
            f"{self.pool:,} scripts",
        }[self.kind]
        return (
            f"{self.kind}: {what}, Zipf s={self.zipf:g}, {self.stream_share:.0%} streamed, "
            f"model {self.model}, seed {self.seed}"
        )
