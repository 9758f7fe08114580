"""Configuration of the mock upstream: :class:`Latency` and :class:`MockConfig`."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import orjson

from hotpath._errors import ConfigError
from hotpath._options import check_count

__all__ = ["FAULTS", "Latency", "MockConfig", "parse_duration"]

#: Fault names understood by ``MockConfig.faults`` and the ``x-mock-fault`` header.
FAULTS: frozenset[str] = frozenset({"429", "500", "503", "hang", "cut", "content_filter"})

LatencyKind = Literal["constant", "uniform", "lognormal", "exponential"]
_ARITY: dict[str, int] = {"constant": 1, "uniform": 2, "lognormal": 2, "exponential": 1}


def parse_duration(text: str, *, what: str = "duration") -> float:
    """Parse ``"300ms"``, ``"0.3s"`` or ``"0.3"`` (seconds) into seconds.

    Raises :class:`ConfigError` naming *what* for anything else, and for negative,
    NaN or infinite values.
    """
    raw = text.strip().lower()
    scale = 1.0
    if raw.endswith("ms"):
        raw, scale = raw[:-2], 0.001
    elif raw.endswith("s"):
        raw = raw[:-1]
    try:
        value = float(raw) * scale
    except ValueError:
        raise ConfigError(
            f"{what}: expected a duration like '300ms', '0.3s' or '0.3', got {text!r}"
        ) from None
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"{what}: expected a finite duration >= 0, got {text!r}")
    return value


def _format_seconds(seconds: float) -> str:
    return f"{seconds * 1000:g}ms"


@dataclass(frozen=True, slots=True)
class Latency:
    """A distribution of delays, in seconds.

    ``kind`` and ``params``:

    - ``"constant"``: ``(seconds,)``
    - ``"uniform"``: ``(low, high)``
    - ``"lognormal"``: ``(median, sigma)``; the median is in seconds, sigma is unitless
    - ``"exponential"``: ``(mean,)``

    Build one with :meth:`parse` or the class methods; ``str(latency)`` gives text
    that :meth:`parse` reads back.
    """

    kind: LatencyKind = "constant"
    params: tuple[float, ...] = (0.0,)

    def __post_init__(self) -> None:
        arity = _ARITY.get(self.kind)
        if arity is None:
            raise ConfigError(f"Latency.kind: expected one of {sorted(_ARITY)}, got {self.kind!r}")
        if len(self.params) != arity or not all(
            isinstance(p, int | float) and not isinstance(p, bool) and math.isfinite(p) and p >= 0
            for p in self.params
        ):
            raise ConfigError(
                f"Latency.params: {self.kind} takes {arity} finite number(s) >= 0, "
                f"got {self.params!r}"
            )
        if self.kind == "uniform" and self.params[0] > self.params[1]:
            raise ConfigError(f"Latency.params: uniform needs low <= high, got {self.params!r}")

    @classmethod
    def constant(cls, seconds: float) -> Latency:
        return cls("constant", (seconds,))

    @classmethod
    def uniform(cls, low: float, high: float) -> Latency:
        return cls("uniform", (low, high))

    @classmethod
    def lognormal(cls, median: float, sigma: float) -> Latency:
        return cls("lognormal", (median, sigma))

    @classmethod
    def exponential(cls, mean: float) -> Latency:
        return cls("exponential", (mean,))

    @classmethod
    def parse(cls, text: str) -> Latency:
        """Parse ``"300ms"``, ``"0.3s"``, ``"0.3"``, ``"uniform:100ms,300ms"``,
        ``"lognormal:200ms,0.5"`` (median, sigma) or ``"exponential:200ms"`` (mean).

        Raises :class:`ConfigError` naming the text for anything else.
        """
        if not isinstance(text, str):
            raise ConfigError(f"latency: expected text like '300ms', got {text!r}")
        try:
            return cls._parse(text)
        except ConfigError as exc:
            if repr(text) in str(exc):
                raise
            raise ConfigError(f"latency {text!r}: {exc}") from None

    @classmethod
    def _parse(cls, text: str) -> Latency:
        kind, sep, rest = text.strip().partition(":")
        if not sep:
            return cls.constant(parse_duration(text, what="latency"))
        args = [a.strip() for a in rest.split(",")]
        kind = kind.strip().lower()
        what = f"latency {text!r}"
        if kind == "uniform" and len(args) == 2:
            low, high = (parse_duration(a, what=what) for a in args)
            return cls.uniform(low, high)
        if kind == "lognormal" and len(args) == 2:
            try:
                sigma = float(args[1])
            except ValueError:
                raise ConfigError(f"{what}: sigma must be a number, got {args[1]!r}") from None
            return cls.lognormal(parse_duration(args[0], what=what), sigma)
        if kind == "exponential" and len(args) == 1:
            return cls.exponential(parse_duration(args[0], what=what))
        raise ConfigError(
            f"latency: expected '300ms', 'uniform:LOW,HIGH', 'lognormal:MEDIAN,SIGMA' "
            f"or 'exponential:MEAN', got {text!r}"
        )

    def sample(self, rng: random.Random) -> float:
        """Draw one delay in seconds (always >= 0)."""
        p = self.params
        if self.kind == "constant":
            return p[0]
        if self.kind == "uniform":
            return rng.uniform(p[0], p[1])
        if self.kind == "lognormal":
            if p[0] == 0:
                return 0.0
            return rng.lognormvariate(math.log(p[0]), p[1])
        if p[0] == 0:
            return 0.0
        return rng.expovariate(1.0 / p[0])

    def __str__(self) -> str:
        p = self.params
        if self.kind == "constant":
            return _format_seconds(p[0])
        if self.kind == "uniform":
            return f"uniform:{_format_seconds(p[0])},{_format_seconds(p[1])}"
        if self.kind == "lognormal":
            return f"lognormal:{_format_seconds(p[0])},{p[1]:g}"
        return f"exponential:{_format_seconds(p[0])}"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True, kw_only=True)
class MockConfig:
    """How the mock upstream behaves. Every field is validated on construction;
    a bad value raises :class:`ConfigError` naming the field and the value.

    - ``ttft``: time to first token; for non-streaming answers, the time before
      the response starts.
    - ``tokens_per_second``: ``None`` sends all tokens at once; otherwise stream
      chunks are spaced ``1/tps`` apart and non-streaming answers wait an extra
      ``completion_tokens / tps`` (of the longest choice).
    - ``completion_tokens``: answer length when the request sets no
      ``max_tokens`` / ``max_completion_tokens`` (which cap it).
    - ``embedding_dimensions``: vector length when a request sets no ``dimensions``.
    - ``faults``: fault name (see :data:`FAULTS`) -> probability; at most 1 in total.
    - ``retry_after``: seconds announced in ``Retry-After`` on 429 answers.
    - ``seed``: seeds the RNG that samples latencies and faults.
    - ``api_key``: when set, requests must carry it (``Authorization: Bearer`` on
      OpenAI routes, ``x-api-key`` on the Anthropic route) or get a 401.
    - ``rate_limit_rpm`` / ``rate_limit_tpm``: requests / tokens per minute, as
      token buckets (capacity = the limit, continuous refill); a request takes 1
      request and its prompt tokens + ``max_tokens`` (else ``completion_tokens``)
      tokens at admission, or gets a 429. ``None``: no limit.
    - ``context_window``: the context window of every model (``None``: unlimited);
      ``context_windows`` per model name, overriding it. A prompt whose tokens plus
      ``max_tokens`` exceed it gets a 400 ``context_length_exceeded``.
    - ``capacity``: requests the upstream serves at full speed; with more in
      flight, a new request's ttft and token spacing are stretched by
      ``in_flight / capacity``. ``None``: unlimited.
    - ``model_faults``: model name -> (fault -> probability); requests for a
      listed model draw their fault from its table instead of ``faults``.
    """

    ttft: Latency = field(default_factory=Latency)
    tokens_per_second: float | None = None
    completion_tokens: int = 16
    embedding_dimensions: int = 1536
    faults: Mapping[str, float] = field(default_factory=dict)
    retry_after: float = 1.0
    seed: int = 0
    api_key: str | None = None
    rate_limit_rpm: int | None = None
    rate_limit_tpm: int | None = None
    context_window: int | None = None
    context_windows: Mapping[str, int] = field(default_factory=dict)
    capacity: int | None = None
    model_faults: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.ttft, Latency):
            raise ConfigError(
                f"MockConfig.ttft: expected a Latency (e.g. Latency.parse('300ms')), "
                f"got {self.ttft!r}"
            )
        tps = self.tokens_per_second
        if tps is not None and not (_is_number(tps) and math.isfinite(tps) and tps > 0):
            raise ConfigError(
                f"MockConfig.tokens_per_second: expected a finite number > 0 or None, got {tps!r}"
            )
        if not (_is_int(self.completion_tokens) and self.completion_tokens >= 1):
            raise ConfigError(
                f"MockConfig.completion_tokens: expected an int >= 1, "
                f"got {self.completion_tokens!r}"
            )
        dims = self.embedding_dimensions
        if not (_is_int(dims) and 1 <= dims <= 65536):
            raise ConfigError(
                f"MockConfig.embedding_dimensions: expected an int in [1, 65536], got {dims!r}"
            )
        object.__setattr__(self, "faults", MappingProxyType(_check_faults(self.faults)))
        ra = self.retry_after
        if not (_is_number(ra) and math.isfinite(ra) and ra >= 0):
            raise ConfigError(f"MockConfig.retry_after: expected a finite number >= 0, got {ra!r}")
        if not _is_int(self.seed):
            raise ConfigError(f"MockConfig.seed: expected an int, got {self.seed!r}")
        key = self.api_key
        if key is not None and not (isinstance(key, str) and key and key.isprintable()):
            raise ConfigError(
                f"MockConfig.api_key: expected a non-empty printable str or None, got {key!r}"
            )
        for name in ("rate_limit_rpm", "rate_limit_tpm", "context_window", "capacity"):
            value = getattr(self, name)
            if value is not None:
                check_count(value, f"MockConfig.{name}")
        object.__setattr__(self, "context_windows", MappingProxyType(_check_windows(self)))
        models = self.model_faults
        if not isinstance(models, Mapping):
            raise ConfigError(
                f"MockConfig.model_faults: expected a mapping model -> (fault -> probability), "
                f"got {models!r}"
            )
        checked: dict[str, Mapping[str, float]] = {}
        for model, faults in models.items():
            where = f"MockConfig.model_faults[{model!r}]"
            if not isinstance(model, str) or not model:
                raise ConfigError(f"MockConfig.model_faults: bad model name {model!r}")
            checked[model] = MappingProxyType(_check_faults(faults, where))
        object.__setattr__(self, "model_faults", MappingProxyType(checked))

    @property
    def rate_limited(self) -> bool:
        """Whether a rate limit is configured."""
        return self.rate_limit_rpm is not None or self.rate_limit_tpm is not None

    def window(self, model: str) -> int | None:
        """The context window of *model* (``None``: unlimited)."""
        return self.context_windows.get(model, self.context_window)

    def faults_for(self, model: object) -> Mapping[str, float]:
        """The fault table requests for *model* draw from."""
        if self.model_faults and isinstance(model, str):
            return self.model_faults.get(model, self.faults)
        return self.faults

    def to_json(self) -> bytes:
        """Serialize to JSON that :meth:`from_json` reads back (used to hand the
        config to worker processes)."""
        return orjson.dumps(
            {
                "ttft": str(self.ttft),
                "tokens_per_second": self.tokens_per_second,
                "completion_tokens": self.completion_tokens,
                "embedding_dimensions": self.embedding_dimensions,
                "faults": dict(self.faults),
                "retry_after": self.retry_after,
                "seed": self.seed,
                "api_key": self.api_key,
                "rate_limit_rpm": self.rate_limit_rpm,
                "rate_limit_tpm": self.rate_limit_tpm,
                "context_window": self.context_window,
                "context_windows": dict(self.context_windows),
                "capacity": self.capacity,
                "model_faults": {m: dict(f) for m, f in self.model_faults.items()},
            }
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> MockConfig:
        """Inverse of :meth:`to_json`; raises :class:`ConfigError` on bad input.
        Missing keys get their defaults."""
        return cls._from_dict(_json_object(data))

    def updated_from_json(self, data: bytes | str) -> MockConfig:
        """This config with the keys of the JSON object *data* (the
        :meth:`to_json` format) replaced; missing keys keep their values."""
        raw = orjson.loads(self.to_json())
        raw.update(_json_object(data))
        return self._from_dict(raw)

    @classmethod
    def _from_dict(cls, raw: dict[str, Any]) -> MockConfig:
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"MockConfig JSON: unknown keys {sorted(unknown)!r}")
        if "ttft" in raw:
            raw["ttft"] = Latency.parse(raw["ttft"])
        return cls(**raw)


def _json_object(data: bytes | str) -> dict[str, Any]:
    try:
        raw: Any = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"MockConfig JSON: not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"MockConfig JSON: expected an object, got {raw!r}")
    return raw


def _check_windows(config: MockConfig) -> dict[str, int]:
    windows = config.context_windows
    if not isinstance(windows, Mapping):
        raise ConfigError(
            f"MockConfig.context_windows: expected a mapping model -> tokens, got {windows!r}"
        )
    checked: dict[str, int] = {}
    for model, size in windows.items():
        if not isinstance(model, str) or not model:
            raise ConfigError(f"MockConfig.context_windows: bad model name {model!r}")
        checked[model] = check_count(size, f"MockConfig.context_windows[{model!r}]")
    return checked


def _check_faults(faults: object, where: str = "MockConfig.faults") -> dict[str, float]:
    if not isinstance(faults, Mapping):
        raise ConfigError(f"{where}: expected a mapping name -> probability, got {faults!r}")
    checked: dict[str, float] = {}
    for name, prob in faults.items():
        if name not in FAULTS:
            raise ConfigError(f"{where}: unknown fault {name!r}, expected one of {sorted(FAULTS)}")
        if not (_is_number(prob) and 0 <= prob <= 1):
            raise ConfigError(f"{where}[{name!r}]: expected a probability in [0, 1], got {prob!r}")
        checked[name] = float(prob)
    total = sum(checked.values())
    if total > 1 + 1e-9:
        raise ConfigError(f"{where}: probabilities sum to {total:g} > 1: {checked!r}")
    return checked
