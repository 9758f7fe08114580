"""Checks on request bodies: a missing or ill-typed field is a 400 naming it.

Only the fields the gateway itself relies on are checked; everything else passes
through untouched for the provider to judge.
"""

from __future__ import annotations

from typing import Any

from hotpath._errors import short_repr
from hotpath.gateway._api_errors import ApiError, bad_request

__all__ = ["check_chat", "check_embeddings", "parse_json"]


def parse_json(raw: bytes, loads: Any) -> dict[str, Any]:
    """The body as a JSON object (400 if it is not JSON or not an object)."""
    try:
        body = loads(raw)
    except ValueError as exc:
        raise bad_request(f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request(f"request body must be a JSON object, got {short_repr(body)}")
    return body


def _missing(name: str) -> ApiError:
    return bad_request(f"missing required field {name!r}", param=name, code="missing_required")


def _typed(name: str, expected: str, value: object) -> ApiError:
    return bad_request(
        f"field {name!r} must be {expected}, got {short_repr(value)}",
        param=name,
        code="invalid_type",
    )


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise _missing("model")
    if not isinstance(model, str) or not model:
        raise _typed("model", "a non-empty string", model)
    return model


def _optional(body: dict[str, Any], name: str, types: tuple[type, ...], expected: str) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) and bool not in types:
        raise _typed(name, expected, value)
    if not isinstance(value, types):
        raise _typed(name, expected, value)


def check_chat(body: dict[str, Any]) -> str:
    """Check a chat-completions body; returns its model name."""
    model = _model(body)
    messages = body.get("messages")
    if messages is None:
        raise _missing("messages")
    if not isinstance(messages, list) or not messages:
        raise _typed("messages", "a non-empty array", messages)
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _typed(f"messages[{i}]", "an object", message)
        role = message.get("role")
        if role is None:
            raise _missing(f"messages[{i}].role")
        if not isinstance(role, str):
            raise _typed(f"messages[{i}].role", "a string", role)
    _optional(body, "stream", (bool,), "a boolean")
    _optional(body, "n", (int,), "an integer")
    n = body.get("n")
    if n is not None and n < 1:
        raise _typed("n", "an integer >= 1", n)
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        _optional(body, name, (int, float), "a number")
    for name in ("max_tokens", "max_completion_tokens", "seed"):
        _optional(body, name, (int,), "an integer")
    _optional(body, "tools", (list,), "an array")
    _optional(body, "stream_options", (dict,), "an object")
    _optional(body, "stop", (str, list), "a string or an array of strings")
    return model


def check_embeddings(body: dict[str, Any]) -> tuple[str, list[str | list[int]], bool]:
    """Check an embeddings body; returns the model, the input items and whether the
    input was a single item (string or one token array) rather than a batch."""
    model = _model(body)
    data = body.get("input")
    if data is None:
        raise _missing("input")
    expected = "a string, an array of strings, or token arrays"
    if isinstance(data, str):
        items: list[str | list[int]] = [data]
        single = True
    elif isinstance(data, list) and data and all(_is_token(t) for t in data):
        items = [data]
        single = True
    elif isinstance(data, list) and data:
        items = []
        for i, item in enumerate(data):
            tokens = isinstance(item, list) and item and all(_is_token(t) for t in item)
            if isinstance(item, str) or tokens:
                items.append(item)
            else:
                raise _typed(f"input[{i}]", "a string or an array of token ids", item)
        single = False
    else:
        raise _typed("input", expected, data)
    _optional(body, "dimensions", (int,), "an integer")
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise _typed("encoding_format", "'float' or 'base64'", fmt)
    return model, items, single


def _is_token(value: object) -> bool:
    return type(value) is int
