"""Choosing a model per request among a route's candidates, on cost, quality and speed.

A gateway route may name several candidate models. For each request
:meth:`ModelSelector.choose` applies, in order:

1. **Fit.** A candidate is eligible when it is not excluded and its context window
   (if known) holds the prompt plus the completion ceiling. When no candidate fits,
   the one with the largest window is chosen (``"only_fit"``).
2. **Long prompt.** With ``long_prompt_tokens`` set, a prompt longer than that goes
   to ``long_prompt_model`` when it is eligible (``"long_prompt"``).
3. **Cheap tier.** ``tier="cheap"`` takes the eligible candidate of quality
   ``>= min_quality`` with the lowest expected cost of the request (``"cheap"``).
4. **Score.** Otherwise each eligible candidate gets a weighted score, each part
   relative to the best eligible candidate (1.0 = the best):

   - cost: ``cheapest_cost / own_cost`` (0.0 when the price is unknown);
   - quality: ``quality / max_quality``;
   - speed: ``fastest_latency / own_latency`` over the observed latencies; a model
     never observed scores 1.0, so it gets tried.

   The highest weighted mean wins; ties go to the cheaper, then the lower name.

The expected cost of a request is ``prompt_tokens * input_price + completion *
output_price`` (prices in USD per million tokens), where ``completion`` is the
request's completion ceiling (its ``max_tokens``) or ``expected_completion_tokens``.

Latency is an EWMA per model whose old samples fade with time constant ``decay``
seconds, as in :class:`hotpath.traffic.Router`. An estimate nobody refreshes loses
its weight too: the speed score of a model last observed ``age`` seconds ago is
``1 - exp(-age / decay) * (1 - fastest / own)``, drifting back to the 1.0 of an
unobserved model. So a model that was slow a while ago is tried and measured
again instead of being shunned for ever.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from hotpath._clock import Clock, SystemClock
from hotpath._errors import ConfigError, short_repr
from hotpath._options import check_count, check_non_negative, check_positive

__all__ = ["Candidate", "Choice", "ChoiceReason", "ModelSelector", "Weights"]

ChoiceReason = Literal["score", "cheap", "long_prompt", "only_fit"]
_TIERS = ("default", "cheap")
_UNKNOWN_COST = math.inf  # sorts after every known cost
_NO_WINDOW = 1 << 62  # a window nothing exceeds: unknown windows always fit


@dataclass(frozen=True, slots=True)
class Weights:
    """How much cost, quality and speed count in the score. Each is >= 0 and at
    least one is > 0; only their ratios matter."""

    cost: float = 0.4
    quality: float = 0.4
    speed: float = 0.2

    def __post_init__(self) -> None:
        for field in ("cost", "quality", "speed"):
            check_non_negative(getattr(self, field), f"weights.{field}")
        if self.cost + self.quality + self.speed <= 0:
            raise ConfigError(f"weights must not all be 0, got {self!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """A model a route may send a request to. ``quality`` is a configured rating in
    [0, 1]; prices are USD per million prompt / completion tokens, ``None`` when
    unknown (a candidate with either price unknown has an unknown cost);
    ``context_window`` is in tokens, ``None`` when unknown (then it always fits).
    :class:`ModelSelector` checks the values."""

    name: str
    quality: float
    input_price: float | None
    output_price: float | None
    context_window: int | None = None


@dataclass(frozen=True, slots=True)
class Choice:
    """The model chosen for a request and why. ``score`` is its total score and
    ``scores`` the total of every eligible candidate (for a debug header)."""

    model: str
    reason: ChoiceReason
    score: float
    scores: Mapping[str, float]


class _Entry:
    """A checked candidate, prices per token, and its latency estimate."""

    __slots__ = (
        "candidate",
        "ewma",
        "in_price",
        "known",
        "name",
        "out_price",
        "quality",
        "stamp",
        "window",
    )

    def __init__(self, candidate: Candidate) -> None:
        self.candidate = candidate
        self.name = candidate.name
        self.quality = float(candidate.quality)
        self.known = candidate.input_price is not None and candidate.output_price is not None
        self.in_price = (candidate.input_price or 0.0) / 1e6
        self.out_price = (candidate.output_price or 0.0) / 1e6
        window = candidate.context_window
        self.window = _NO_WINDOW if window is None else window
        self.ewma = 0.0  # seconds; 0.0 = never observed
        self.stamp = 0.0

    def cost(self, prompt_tokens: int, completion: int) -> float:
        if not self.known:
            return _UNKNOWN_COST
        return prompt_tokens * self.in_price + completion * self.out_price


class ModelSelector:
    """Picks one of ``candidates`` per request (see the module docstring for the
    rules) and learns their latencies from :meth:`observe`.

    ``min_quality`` is the quality floor of the cheap tier; ``long_prompt_tokens``
    and ``long_prompt_model`` go together; ``decay`` is the latency EWMA's time
    constant in seconds. Not thread-safe: use it from one event loop.
    """

    __slots__ = (
        "_by_name",
        "_clock",
        "_decay",
        "_entries",
        "_expected_completion",
        "_long_model",
        "_long_tokens",
        "_min_quality",
        "_observed",
        "_smallest_window",
        "_w_cost",
        "_w_quality",
        "_w_speed",
        "_weights",
    )

    def __init__(
        self,
        candidates: Sequence[Candidate],
        *,
        weights: Weights = Weights(),
        min_quality: float = 0.0,
        long_prompt_tokens: int | None = None,
        long_prompt_model: str | None = None,
        expected_completion_tokens: int = 256,
        clock: Clock | None = None,
        decay: float = 10.0,
    ) -> None:
        items: tuple[object, ...] = tuple(candidates)
        if not items:
            raise ConfigError(f"candidates must not be empty, got {short_repr(candidates)}")
        entries: list[_Entry] = []
        by_name: dict[str, _Entry] = {}
        for index, candidate in enumerate(items):
            entry = _check_candidate(candidate, index)
            if entry.name in by_name:
                raise ConfigError(f"candidates[{entry.name}].name: duplicate name {entry.name!r}")
            by_name[entry.name] = entry
            entries.append(entry)
        if not isinstance(weights, Weights):
            raise ConfigError(f"weights must be a Weights, got {short_repr(weights)}")
        self._min_quality = _check_unit(min_quality, "min_quality")
        self._expected_completion = check_count(
            expected_completion_tokens, "expected_completion_tokens"
        )
        if long_prompt_tokens is not None:
            check_count(long_prompt_tokens, "long_prompt_tokens")
        if long_prompt_model is not None and long_prompt_model not in by_name:
            raise ConfigError(
                f"long_prompt_model must be one of the candidates "
                f"({', '.join(by_name)}), got {short_repr(long_prompt_model)}"
            )
        if (long_prompt_tokens is None) != (long_prompt_model is None):
            raise ConfigError(
                "long_prompt_tokens and long_prompt_model go together, got "
                f"long_prompt_tokens={long_prompt_tokens!r}, "
                f"long_prompt_model={short_repr(long_prompt_model)}"
            )
        self._decay = check_positive(decay, "decay")
        self._entries = tuple(entries)
        self._by_name = by_name
        self._long_tokens = long_prompt_tokens
        self._long_model = None if long_prompt_model is None else by_name[long_prompt_model]
        self._weights = weights
        total = weights.cost + weights.quality + weights.speed
        self._w_cost = weights.cost / total
        self._w_quality = weights.quality / total
        self._w_speed = weights.speed / total
        # A request needing no more tokens than this fits every candidate: no filtering.
        self._smallest_window = min(e.window for e in entries)
        self._observed = False
        self._clock: Clock = clock if clock is not None else SystemClock()

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        return tuple(e.candidate for e in self._entries)

    @property
    def weights(self) -> Weights:
        return self._weights

    def observe(self, model: str, latency: float) -> None:
        """``model`` answered after ``latency`` seconds (time to first byte or the
        whole call; use one kind per selector). Unknown models, and latencies that
        are not finite and > 0, are ignored."""
        entry = self._by_name.get(model)
        if entry is None or not (latency > 0 and math.isfinite(latency)):
            return
        now = self._clock.monotonic()
        if entry.ewma == 0.0:
            entry.ewma = float(latency)
        else:
            keep = math.exp(-max(0.0, now - entry.stamp) / self._decay)
            entry.ewma = entry.ewma * keep + latency * (1.0 - keep)
        entry.stamp = now
        self._observed = True

    def latency(self, model: str) -> float | None:
        """The latency estimate of ``model`` in seconds; ``None`` when it was never
        observed or is not a candidate."""
        entry = self._by_name.get(model)
        if entry is None or entry.ewma == 0.0:
            return None
        return entry.ewma

    def choose(
        self,
        *,
        prompt_tokens: int = 0,
        completion_tokens: int | None = None,
        tier: str = "default",
        exclude: Collection[str] = (),
    ) -> Choice:
        """The model for a request of ``prompt_tokens`` whose completion may reach
        ``completion_tokens`` (``None``: ``expected_completion_tokens``).

        ``tier`` is ``"default"`` or ``"cheap"``; ``exclude`` names models not to
        use (e.g. already tried). If ``exclude`` would leave no candidate, it is
        ignored: a repeated model beats no answer.
        """
        if tier == "default":
            cheap = False
        elif tier == "cheap":
            cheap = True
        else:
            raise ConfigError(f"tier must be 'default' or 'cheap', got {short_repr(tier)}")
        if prompt_tokens < 0:
            raise ConfigError(f"prompt_tokens must be >= 0, got {prompt_tokens!r}")
        if completion_tokens is None:
            completion = self._expected_completion
        elif completion_tokens < 0:
            raise ConfigError(f"completion_tokens must be >= 0, got {completion_tokens!r}")
        else:
            completion = completion_tokens

        pool: Sequence[_Entry] = self._entries
        if exclude:
            pool = [e for e in pool if e.name not in exclude] or self._entries
        need = prompt_tokens + completion
        if need > self._smallest_window:
            eligible = [e for e in pool if e.window >= need]
            if not eligible:
                # Every window is known and too small: the largest may still do.
                best = min(pool, key=lambda e: (-e.window, -e.quality, e.name))
                scores = self._scores([best], prompt_tokens, completion)
                return Choice(best.name, "only_fit", scores[best.name], scores)
            pool = eligible

        costs = [e.cost(prompt_tokens, completion) for e in pool]
        scores = self._scores(pool, prompt_tokens, completion, costs)

        long_model = self._long_model
        if (
            long_model is not None
            and self._long_tokens is not None
            and prompt_tokens > self._long_tokens
            and long_model in pool
        ):
            return Choice(long_model.name, "long_prompt", scores[long_model.name], scores)

        if cheap:
            floor = self._min_quality
            ranked = [
                (c, -e.quality, e.name)
                for e, c in zip(pool, costs, strict=True)
                if e.quality >= floor
            ]
            if not ranked:  # nothing good enough: the cheapest of all
                ranked = [(c, -e.quality, e.name) for e, c in zip(pool, costs, strict=True)]
            name = min(ranked)[2]
            return Choice(name, "cheap", scores[name], scores)

        name = min((-scores[e.name], c, e.name) for e, c in zip(pool, costs, strict=True))[2]
        return Choice(name, "score", scores[name], scores)

    def _scores(
        self,
        pool: Sequence[_Entry],
        prompt_tokens: int,
        completion: int,
        costs: list[float] | None = None,
    ) -> dict[str, float]:
        if costs is None:
            costs = [e.cost(prompt_tokens, completion) for e in pool]
        cheapest = min(costs)
        top_quality = max(e.quality for e in pool)
        fastest = 0.0
        now = 0.0
        if self._observed and self._w_speed > 0:
            fastest = min((e.ewma for e in pool if e.ewma > 0.0), default=0.0)
            if fastest > 0.0:
                now = self._clock.monotonic()
        w_cost, w_quality, w_speed = self._w_cost, self._w_quality, self._w_speed
        scores: dict[str, float] = {}
        for entry, cost in zip(pool, costs, strict=True):
            if cost == _UNKNOWN_COST:
                cost_score = 0.0
            elif cost == 0.0:  # the cheapest is free too
                cost_score = 1.0
            else:
                cost_score = cheapest / cost
            quality_score = entry.quality / top_quality if top_quality > 0.0 else 1.0
            speed_score = 1.0
            if fastest > 0.0 and entry.ewma > 0.0:
                trust = math.exp(-max(0.0, now - entry.stamp) / self._decay)
                speed_score = 1.0 - trust * (1.0 - fastest / entry.ewma)
            scores[entry.name] = (
                w_cost * cost_score + w_quality * quality_score + w_speed * speed_score
            )
        return scores

    def __repr__(self) -> str:
        names = ", ".join(e.name for e in self._entries)
        return f"ModelSelector([{names}], weights={self._weights!r})"


def _check_candidate(candidate: object, index: int) -> _Entry:
    if not isinstance(candidate, Candidate):
        raise ConfigError(f"candidates[{index}] must be a Candidate, got {short_repr(candidate)}")
    name = candidate.name
    if not isinstance(name, str) or not name:
        raise ConfigError(f"candidates[{index}].name must be a non-empty string, got {name!r}")
    where = f"candidates[{name}]"
    _check_unit(candidate.quality, f"{where}.quality")
    for field in ("input_price", "output_price"):
        price = getattr(candidate, field)
        if price is not None:
            check_non_negative(price, f"{where}.{field}")
    window = candidate.context_window
    if window is not None:
        check_count(window, f"{where}.context_window")
    return _Entry(candidate)


def _check_unit(value: object, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0.0 <= value <= 1.0  # also rejects NaN
    ):
        raise ConfigError(f"{name} must be a number in [0, 1], got {short_repr(value)}")
    return float(value)
