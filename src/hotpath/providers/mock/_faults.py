"""Per-request behaviour (fault, ttft, tps) and the error replies of faults."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from hotpath.providers.mock._config import FAULTS, MockConfig
from hotpath.providers.mock._http import Header, Reply, anthropic_error, openai_error

__all__ = ["ERRORS", "Plan", "anthropic_fault", "openai_fault", "plan"]

ERRORS = frozenset({"429", "500", "503"})


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with one request: which fault (if any), its timing, and the
    context window it must fit (``None``: unlimited)."""

    fault: str | None
    ttft: float
    tps: float | None
    retry_after: float
    window: int | None = None


def _header_number(headers: dict[str, str], name: str, strict: bool) -> float | None:
    text = headers.get(name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and (value > 0 if strict else value >= 0)):
        raise ValueError(
            f"header {name}: expected a number {'>' if strict else '>='} 0, got {text!r}"
        )
    return value


def plan(
    headers: dict[str, str], config: MockConfig, rng: random.Random, model: object = None
) -> Plan:
    """The request's plan: ``x-mock-*`` headers override *config*, whose faults
    (those of *model* if ``model_faults`` lists it) and ttft are sampled from
    *rng*. Raises ``ValueError`` naming a bad header."""
    fault = headers.get("x-mock-fault")
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"header x-mock-fault: expected one of {sorted(FAULTS)}, got {fault!r}")
    faults = config.faults_for(model)
    if fault is None and faults:
        draw = rng.random()
        for name, probability in faults.items():
            draw -= probability
            if draw < 0:
                fault = name
                break
    ttft_ms = _header_number(headers, "x-mock-ttft-ms", strict=False)
    ttft = ttft_ms / 1000 if ttft_ms is not None else config.ttft.sample(rng)
    tps = _header_number(headers, "x-mock-tps", strict=True) or config.tokens_per_second
    retry = _header_number(headers, "x-mock-retry-after", strict=False)
    window_text = headers.get("x-mock-context-window")
    if window_text is None:
        window = config.context_window
        if config.context_windows and isinstance(model, str):
            window = config.context_windows.get(model, window)
    elif window_text.isascii() and window_text.isdigit() and int(window_text) > 0:
        window = int(window_text)
    else:
        raise ValueError(
            f"header x-mock-context-window: expected an integer > 0, got {window_text!r}"
        )
    return Plan(fault, ttft, tps, config.retry_after if retry is None else retry, window)


def _retry_headers(seconds: float) -> list[Header]:
    return [
        (b"retry-after", f"{seconds:g}".encode()),
        (b"retry-after-ms", f"{seconds * 1000:.0f}".encode()),
    ]


def openai_fault(kind: str, retry_after: float = 0.0) -> Reply:
    """OpenAI's error reply for *kind*: ``"401"``, ``"json"`` (unparsable body),
    ``"429"``, ``"500"`` or ``"503"``."""
    if kind == "401":
        msg = "Incorrect API key provided. (hotpath mock)"
        return openai_error(401, msg, code="invalid_api_key")
    if kind == "json":
        msg = "We could not parse the JSON body of your request. (hotpath mock)"
        return openai_error(400, msg)
    if kind == "429":
        msg = "Rate limit reached for requests. (hotpath mock)"
        headers = _retry_headers(retry_after)
        return openai_error(
            429, msg, "rate_limit_error", code="rate_limit_exceeded", headers=headers
        )
    if kind == "500":
        msg = "The server had an error while processing your request. (hotpath mock)"
        return openai_error(500, msg, "server_error")
    msg = "The engine is currently overloaded, please try again later. (hotpath mock)"
    return openai_error(503, msg, "server_error")


def anthropic_fault(kind: str, retry_after: float = 0.0) -> Reply:
    """Anthropic's error reply for *kind* (see :func:`openai_fault`)."""
    if kind == "401":
        return anthropic_error(401, "invalid x-api-key", "authentication_error")
    if kind == "json":
        return anthropic_error(400, "The request body is not valid JSON. (hotpath mock)")
    if kind == "429":
        msg = "Number of requests has exceeded your rate limit. (hotpath mock)"
        return anthropic_error(429, msg, "rate_limit_error", _retry_headers(retry_after))
    if kind == "500":
        return anthropic_error(500, "Internal server error. (hotpath mock)", "api_error")
    return anthropic_error(503, "Overloaded. (hotpath mock)", "overloaded_error")
