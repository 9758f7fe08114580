"""An OpenAI chat completion request body as an Anthropic Messages request body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from hotpath._errors import ConfigError
from hotpath._errors import short_repr as show
from hotpath.providers._anthropic_errors import TranslationError
from hotpath.providers._anthropic_messages import translate_messages

__all__ = ["chat_to_messages"]

_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}

_JSON_OBJECT_INSTRUCTION = (
    "Respond with a single valid JSON object and nothing else: no prose before or after "
    "it and no Markdown code fences."
)

# Fields that request something Anthropic cannot do, with what the client asked for.
# Dropping them would hand back an answer that silently lacks it, so they are refused.
_UNSUPPORTED = {
    "logprobs": "token log probabilities",
    "top_logprobs": "token log probabilities",
    "logit_bias": "token logit biases",
    "audio": "audio output",
    "functions": "the legacy function calling API (use tools)",
    "function_call": "the legacy function calling API (use tool_choice)",
    "web_search_options": "OpenAI web search",
}


def chat_to_messages(
    body: Mapping[str, Any], *, model: str, default_max_tokens: int = 4096
) -> dict[str, Any]:
    """Translate an OpenAI ``POST /v1/chat/completions`` body for ``POST /v1/messages``.

    ``model`` is the Anthropic model to call (the body's own ``model`` is the public
    name and is not copied). ``max_tokens`` is required by Anthropic, so it is
    ``max_completion_tokens``, else ``max_tokens``, else ``default_max_tokens``.

    Raises :class:`TranslationError` naming the JSON path and value of the first
    field that is malformed or asks for something Anthropic cannot do (``n`` > 1,
    ``logprobs``, ``logit_bias``, audio, legacy ``functions``, non-function tools,
    files other than PDF data, images other than JPEG/PNG/GIF/WebP). Unknown fields
    are ignored, as are fields that leave the answer valid without an Anthropic
    equivalent (``seed``, ``presence_penalty``, ``frequency_penalty``, ``store``,
    ``metadata``, ``service_tier``, ``stream_options``, ``reasoning_effort``, ...).
    The returned dict shares no mutable state with ``body``, except JSON Schemas
    and ``cache_control`` values, which are reused as given.
    """
    if isinstance(default_max_tokens, bool) or not isinstance(default_max_tokens, int):
        raise ConfigError(f"default_max_tokens must be an int, got {show(default_max_tokens)}")
    if default_max_tokens < 1:
        raise ConfigError(f"default_max_tokens must be >= 1, got {default_max_tokens!r}")
    _refuse_unsupported(body)

    system, turns = translate_messages(body.get("messages"))
    instruction = _response_format_instruction(body.get("response_format"))
    if instruction is not None:
        system.append({"type": "text", "text": instruction})

    out: dict[str, Any] = {"model": model, "max_tokens": _max_tokens(body, default_max_tokens)}
    if system:
        plain = len(system) == 1 and system[0].keys() == {"type", "text"}
        out["system"] = system[0]["text"] if plain else system
    out["messages"] = turns
    tools = _tools(body.get("tools"))
    if tools:
        out["tools"] = tools
    tool_choice = _tool_choice(body.get("tool_choice"), has_tools=bool(tools))
    if tools and body.get("parallel_tool_calls") is False:
        tool_choice = tool_choice or {"type": "auto"}
        if tool_choice["type"] != "none":
            tool_choice["disable_parallel_tool_use"] = True
    if tool_choice is not None:
        out["tool_choice"] = tool_choice
    stop = _stop(body.get("stop"))
    if stop:
        out["stop_sequences"] = stop
    temperature = _number(body, "temperature", 0.0, 2.0)
    if temperature is not None:
        # OpenAI's scale is 0..2, Anthropic's 0..1. The same number means roughly the
        # same on both up to 1, so it is passed through and only the part of the range
        # Anthropic lacks is clamped, rather than halving every value.
        out["temperature"] = min(temperature, 1.0)
    top_p = _number(body, "top_p", 0.0, 1.0)
    if top_p is not None:
        out["top_p"] = top_p
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise TranslationError(f"stream must be a boolean, got {show(stream)}", param="stream")
    if stream:
        out["stream"] = True
    user = body.get("user")
    if user is not None:
        if not isinstance(user, str):
            raise TranslationError(f"user must be a string, got {show(user)}", param="user")
        out["metadata"] = {"user_id": user}
    return out


def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise TranslationError(
            f"n must be 1 for Anthropic models (one choice per request), got {show(n)}",
            param="n",
        )
    modalities = body.get("modalities")
    if modalities not in (None, [], ["text"]):
        raise TranslationError(
            f"Anthropic models only produce text; modalities got {show(modalities)}",
            param="modalities",
        )
    for name, what in _UNSUPPORTED.items():
        value = body.get(name)
        # null, false, 0, {} and [] ask for nothing and are accepted.
        if value not in (None, False, 0, {}, []):
            raise TranslationError(
                f"{name}: Anthropic models do not support {what}; got {show(value)}",
                param=name,
            )


def _max_tokens(body: Mapping[str, Any], default: int) -> int:
    # max_completion_tokens is OpenAI's current name; max_tokens the deprecated one.
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TranslationError(f"{name} must be an integer >= 1, got {show(value)}", param=name)
        return value
    return default


def _number(body: Mapping[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise TranslationError(
            f"{name} must be a number from {low:g} to {high:g}, got {show(value)}", param=name
        )
    return value


def _stop(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise TranslationError(
            f"stop must be a string or a list of strings, got {show(value)}", param="stop"
        )
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise TranslationError(
                f"stop[{i}] must be a string, got {show(item)}", param=f"stop[{i}]"
            )
    return list(value)


def _response_format_instruction(value: object) -> str | None:
    # Anthropic has no JSON mode, so JSON output is asked for in the system prompt. It
    # is best effort: the model is very likely, but not forced, to comply.
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, Mapping) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return _JSON_OBJECT_INSTRUCTION
    if kind == "json_schema":
        spec = value.get("json_schema") if isinstance(value, Mapping) else None
        if not isinstance(spec, Mapping) or not isinstance(spec.get("schema", {}), Mapping):
            raise TranslationError(
                f"response_format.json_schema must be an object with an object 'schema', "
                f"got {show(spec)}",
                param="response_format.json_schema",
            )
        schema = orjson.dumps(spec.get("schema", {}), option=orjson.OPT_SORT_KEYS).decode()
        return f"{_JSON_OBJECT_INSTRUCTION} The object must conform to this JSON Schema: {schema}"
    raise TranslationError(
        "response_format must be {'type': 'text' | 'json_object' | 'json_schema'}, "
        f"got {show(value)}",
        param="response_format",
    )


def _tools(value: object) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TranslationError(f"tools must be a list, got {show(value)}", param="tools")
    tools = []
    for i, tool in enumerate(value):
        path = f"tools[{i}]"
        if not isinstance(tool, Mapping) or tool.get("type", "function") != "function":
            raise TranslationError(
                f"{path} must be a tool of type 'function', got {show(tool)}", param=path
            )
        function = tool.get("function")
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise TranslationError(
                f"{path}.function must be an object with a string 'name', got {show(function)}",
                param=f"{path}.function",
            )
        schema = function.get("parameters")
        if schema is not None and not isinstance(schema, Mapping):
            raise TranslationError(
                f"{path}.function.parameters must be a JSON Schema object, got {show(schema)}",
                param=f"{path}.function.parameters",
            )
        out: dict[str, Any] = {"name": function["name"]}
        description = function.get("description")
        if description is not None:
            out["description"] = description
        # Anthropic requires a schema; OpenAI's default for "no parameters" is this one.
        out["input_schema"] = schema if schema is not None else dict(_EMPTY_SCHEMA)
        if "cache_control" in tool:
            out["cache_control"] = tool["cache_control"]
        tools.append(out)
    return tools


def _tool_choice(value: object, *, has_tools: bool) -> dict[str, Any] | None:
    if value is None or (not has_tools and value in ("none", "auto")):
        return None
    if not has_tools:
        raise TranslationError(
            f"tool_choice {show(value)} needs tools, and none were given", param="tool_choice"
        )
    if value == "auto":
        return {"type": "auto"}
    if value == "required":
        return {"type": "any"}
    if value == "none":
        return {"type": "none"}
    if isinstance(value, Mapping) and value.get("type") == "function":
        function = value.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            return {"type": "tool", "name": function["name"]}
    raise TranslationError(
        "tool_choice must be 'auto', 'required', 'none' or "
        f"{{'type': 'function', 'function': {{'name': ...}}}}, got {show(value)}",
        param="tool_choice",
    )
