"""What a model's tokens cost: the price table shipped in ``prices.toml``, user
overrides from config, and the lookup of a model name as a client spells it.

Prices are USD per million tokens. A model the table does not know is never
guessed: its cost is ``None`` (recorded as unknown) and a warning names it once.
"""

from __future__ import annotations

import datetime
import functools
import logging
import re
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, Literal

from hotpath._errors import ConfigError, short_repr
from hotpath._options import check_count, check_non_negative, check_text
from hotpath.cost._usage import Usage

__all__ = ["Price", "PriceTable"]

logger = logging.getLogger("hotpath.cost")

_FIELDS = ("cached_input", "context_window", "input", "kind", "output", "provider")
_KINDS = ("chat", "embedding")
_TOP_LEVEL = ("date", "models", "source")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

# How many names ``lookup`` remembers (hits and misses), and how many unknown
# names ``cost`` warns about: both are fed by request bodies, so both are bounded.
_MEMO_LIMIT = 10_000
_WARN_LIMIT = 10_000

# A provider / router prefix (`openai/`, `bedrock/`, `openrouter/openai/` ...) and
# Bedrock's `anthropic.` / `us.anthropic.` model prefix.
_PREFIX = re.compile(
    r"^(?:(?:openai|anthropic|azure|azure_ai|bedrock|vertex_ai|together_ai|together|groq"
    r"|mistral|gemini|google|deepseek|fireworks_ai|openrouter|models)/)*"
    r"(?:(?:[a-z]{2,6}\.)?anthropic\.)?"
)
# A snapshot suffix naming a version of the same model at the same price: a date
# (`-2024-08-06`, `-20241022`, `@20240620`, optionally followed by Bedrock's
# `-v2:0`), Bedrock's version alone, `-latest`, `-preview`, Gemini's `-001`.
# Deliberately not `-0125`-style suffixes (gpt-3.5-turbo-1106 had another price)
# nor dated previews (`-preview-05-20` was priced apart from the GA model).
_SUFFIX = re.compile(
    r"(?:[-@](?:\d{8}|\d{4}-\d{2}-\d{2})(?:-v\d+(?::\d+)?)?|-v\d+:\d+|-latest|-preview|-00\d)$"
)


@dataclass(frozen=True, slots=True)
class Price:
    """The price of one model, in USD per million tokens.

    ``cached_input`` is the price of a prompt token served from the provider's
    prompt cache (Anthropic: the cache-read price); ``None`` means the same as
    ``input``. An embedding model has no ``output`` price.
    """

    input: float
    output: float = 0.0
    cached_input: float | None = None
    kind: Literal["chat", "embedding"] = "chat"
    provider: str = ""
    context_window: int | None = None

    def __post_init__(self) -> None:
        check_non_negative(self.input, "Price.input")
        check_non_negative(self.output, "Price.output")
        if self.cached_input is not None:
            check_non_negative(self.cached_input, "Price.cached_input")
            if self.cached_input > self.input:
                raise ConfigError(
                    f"Price.cached_input must be <= input ({self.input!r}), "
                    f"got {self.cached_input!r}"
                )
        if self.kind not in _KINDS:
            raise ConfigError(f"Price.kind must be 'chat' or 'embedding', got {self.kind!r}")
        if self.kind == "embedding" and self.output:
            raise ConfigError(f"Price.output must be 0 for an embedding model, got {self.output!r}")
        provider: object = self.provider
        if not isinstance(provider, str):
            raise ConfigError(f"Price.provider must be a string, got {provider!r}")
        if self.context_window is not None:
            check_count(self.context_window, "Price.context_window")

    def cost(self, usage: Usage) -> float:
        """USD of one call: uncached prompt tokens at ``input``, cached ones at
        ``cached_input`` (or ``input``), completion tokens at ``output``."""
        cached_price = self.input if self.cached_input is None else self.cached_input
        uncached = usage.prompt_tokens - usage.cached_tokens
        return (
            uncached * self.input
            + usage.cached_tokens * cached_price
            + usage.completion_tokens * self.output
        ) / 1e6


class PriceTable:
    """Prices by model name. ``date`` is the day the prices were checked,
    ``source`` where they came from.

    :meth:`lookup` finds a model under the name a client sent: exactly, then
    lower-cased, without a provider prefix (``openai/gpt-4o``), without a
    snapshot suffix (``gpt-4o-2024-08-06``, ``claude-3-5-sonnet-20241022``,
    ``-latest``). It never falls back to a prefix or fuzzy match: ``gpt-4o-mini``
    is not ``gpt-4o``. Safe to share between threads.
    """

    def __init__(self, prices: Mapping[str, Price], *, date: str = "", source: str = "") -> None:
        for name, price in prices.items():
            if not isinstance(price, Price):
                raise TypeError(f"prices[{name!r}] must be a Price, got {short_repr(price)}")
        self._prices: dict[str, Price] = dict(prices)
        # Lower-cased name -> key; the first key wins if two differ only in case.
        self._lower: dict[str, str] = {}
        for name in self._prices:
            self._lower.setdefault(name.lower(), name)
        self._memo: dict[str, Price | None] = {}
        self._warned: set[str] = set()
        self._warn_capped = False
        self._warn_lock = threading.Lock()
        self.date = date
        self.source = source

    def __repr__(self) -> str:
        return f"PriceTable({len(self._prices)} models, date={self.date!r})"

    @classmethod
    def default(cls) -> PriceTable:
        """The table shipped with hotpath (``hotpath/cost/prices.toml``), parsed on
        first use and shared afterwards. Reads no network."""
        return _default_table()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str = "prices") -> PriceTable:
        """A table from a mapping shaped like ``prices.toml``:
        ``{"date": ..., "source": ..., "models": {name: {"input": ...}}}``.

        Raises :class:`~hotpath.ConfigError` naming the bad field
        (``prices.models."gpt-4o".output``) and the value received.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a table, got {short_repr(data)}")
        for key in data:
            if key not in _TOP_LEVEL:
                raise ConfigError(
                    f"{where}.{key} is not a price table field "
                    f"(expected one of {', '.join(_TOP_LEVEL)}), got {short_repr(data[key])}"
                )
        date = _parse_date(data.get("date", ""), f"{where}.date")
        source = data.get("source", "")
        if not isinstance(source, str):
            raise ConfigError(f"{where}.source must be a string, got {short_repr(source)}")
        if "models" not in data:
            raise ConfigError(f"{where}.models is missing: a price table needs a models table")
        models = data["models"]
        if not isinstance(models, Mapping):
            raise ConfigError(f"{where}.models must be a table, got {short_repr(models)}")
        prices: dict[str, Price] = {}
        for name, raw in models.items():
            check_text(name, f"{where}.models name")
            prices[name] = _parse_price(raw, f'{where}.models."{name}"', base=None)
        return cls(prices, date=date, source=source)

    def with_overrides(
        self, models: Mapping[str, Mapping[str, Any]], *, where: str = "cost.prices"
    ) -> PriceTable:
        """A new table with the user's prices applied; this one is unchanged.

        An entry with ``input`` defines the model's price afresh (replacing any
        shipped one; fields it omits take their defaults). An entry without
        ``input`` updates only the fields it gives of a model already in the
        table (matched by exact name), and is an error for an unknown model.
        """
        if not isinstance(models, Mapping):
            raise ConfigError(f"{where} must be a table, got {short_repr(models)}")
        prices = dict(self._prices)
        for name, raw in models.items():
            check_text(name, f"{where} model name")
            prices[name] = _parse_price(raw, f'{where}."{name}"', base=prices.get(name))
        return type(self)(prices, date=self.date, source=self.source)

    def lookup(self, model: str) -> Price | None:
        """The price of ``model`` as a client named it, or ``None`` if unknown."""
        price = self._prices.get(model)
        if price is not None:
            return price
        try:
            return self._memo[model]
        except KeyError:
            pass
        price = self._normalised(model)
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[model] = price
        return price

    def _normalised(self, model: str) -> Price | None:
        low = model.lower()
        unprefixed = _PREFIX.sub("", low, count=1)
        for candidate in (
            low,
            unprefixed,
            _SUFFIX.sub("", low, count=1),
            _SUFFIX.sub("", unprefixed, count=1),
        ):
            key = self._lower.get(candidate)
            if key is not None:
                return self._prices[key]
        return None

    def cost(self, model: str, usage: Usage) -> float | None:
        """USD of a call to ``model``, or ``None`` when the model has no price (a
        WARNING on logger ``hotpath.cost`` names each such model once)."""
        price = self.lookup(model)
        if price is None:
            self._warn_unknown(model)
            return None
        return price.cost(usage)

    def _warn_unknown(self, model: str) -> None:
        with self._warn_lock:
            if model in self._warned:
                return
            if len(self._warned) >= _WARN_LIMIT:
                if not self._warn_capped:
                    self._warn_capped = True
                    logger.warning(
                        "no price for %d models: further unknown models are not logged",
                        _WARN_LIMIT,
                    )
                return
            self._warned.add(model)
        logger.warning(
            "no price for model %s: its cost is recorded as unknown; add it under [cost.prices]",
            short_repr(model),
        )

    def __contains__(self, model: object) -> bool:
        """Whether :meth:`lookup` finds a price for ``model``."""
        return isinstance(model, str) and self.lookup(model) is not None

    def __len__(self) -> int:
        return len(self._prices)

    def models(self) -> list[str]:
        """The model names of the table, sorted."""
        return sorted(self._prices)


@functools.cache
def _default_table() -> PriceTable:
    text = files("hotpath").joinpath("cost", "prices.toml").read_text(encoding="utf-8")
    return PriceTable.from_mapping(tomllib.loads(text), where="prices.toml")


def _parse_date(value: object, name: str) -> str:
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        return value.isoformat()
    if value == "":
        return ""
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            datetime.date.fromisoformat(value)
        except ValueError:
            pass
        else:
            return value
    raise ConfigError(f"{name} must be an ISO date (YYYY-MM-DD), got {short_repr(value)}")


def _parse_price(raw: object, where: str, *, base: Price | None) -> Price:
    """One ``[models."name"]`` entry, validated field by field. ``base`` is the
    model's current price, which an entry without ``input`` updates."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a table of prices, got {short_repr(raw)}")
    for key in raw:
        if key not in _FIELDS:
            raise ConfigError(
                f"{where}.{key} is not a price field "
                f"(expected one of {', '.join(_FIELDS)}), got {short_repr(raw[key])}"
            )
    fields: dict[str, Any] = {}
    if "kind" in raw:
        kind = raw["kind"]
        if kind not in _KINDS:
            raise ConfigError(f"{where}.kind must be 'chat' or 'embedding', got {short_repr(kind)}")
        fields["kind"] = kind
    for name in ("input", "output", "cached_input"):
        if name in raw:
            fields[name] = check_non_negative(raw[name], f"{where}.{name}")
    if "provider" in raw:
        fields["provider"] = check_text(raw["provider"], f"{where}.provider")
    if "context_window" in raw:
        fields["context_window"] = check_count(raw["context_window"], f"{where}.context_window")

    if "input" in fields or base is None:
        if "input" not in fields:
            raise ConfigError(
                f"{where}.input is missing: a model not in the price table needs an input "
                "price (USD per million prompt tokens)"
            )
        if fields.get("kind", "chat") == "chat" and "output" not in fields:
            raise ConfigError(
                f"{where}.output is missing: a chat model needs an output price "
                "(USD per million completion tokens)"
            )
        merged: dict[str, Any] = fields
    else:
        merged = {
            "input": base.input,
            "output": base.output,
            "cached_input": base.cached_input,
            "kind": base.kind,
            "provider": base.provider,
            "context_window": base.context_window,
            **fields,
        }

    cached, full = merged.get("cached_input"), merged["input"]
    if cached is not None and cached > full:
        raise ConfigError(f"{where}.cached_input must be <= input ({full!r}), got {cached!r}")
    if merged.get("kind", "chat") == "embedding" and merged.get("output", 0.0):
        raise ConfigError(
            f"{where}.output must be absent or 0 for an embedding model, "
            f"got {short_repr(raw.get('output', merged['output']))}"
        )
    return Price(**merged)
