"""OpenAI chat ``messages`` as Anthropic ``messages`` plus the top-level ``system``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from hotpath._errors import short_repr as show
from hotpath.providers._anthropic_errors import TranslationError

__all__ = ["translate_messages"]

_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+);base64,(.*)", re.DOTALL)

# The content part types each role may send.
_TEXT_ONLY = frozenset({"text"})
_USER_PARTS = frozenset({"text", "image_url", "file"})
_ASSISTANT_PARTS = frozenset({"text", "refusal"})


def translate_messages(
    value: object,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """OpenAI ``messages`` as Anthropic (``system`` text blocks, ``messages``).

    Raises :class:`TranslationError` naming the path of the first bad message or part.
    """
    if not isinstance(value, list) or not value:
        raise TranslationError(
            f"messages must be a non-empty list, got {show(value)}", param="messages"
        )
    system: list[dict[str, Any]] = []
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    for i, message in enumerate(value):
        path = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise TranslationError(f"{path} must be an object, got {show(message)}", param=path)
        role = message.get("role")
        if role in ("system", "developer"):
            # Anthropic has one top-level system prompt; system messages found later in
            # the conversation join it, in order.
            system.extend(_parts(message.get("content"), f"{path}.content", _TEXT_ONLY))
            continue
        if role == "user":
            blocks = _parts(message.get("content"), f"{path}.content", _USER_PARTS)
            role_out = "user"
        elif role == "assistant":
            blocks = _assistant_blocks(message, path)
            role_out = "assistant"
        elif role == "tool":
            blocks = [_tool_result(message, path)]
            role_out = "user"
        else:
            raise TranslationError(
                f"{path}.role must be 'system', 'developer', 'user', 'assistant' or 'tool', "
                f"got {show(role)}",
                param=f"{path}.role",
            )
        if not blocks:
            continue
        # Anthropic wants user and assistant turns to alternate, so runs of one role
        # (tool results followed by the user's next words, say) become one turn.
        if turns and turns[-1][0] == role_out:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role_out, blocks))
    if not turns:
        raise TranslationError(
            "messages must hold at least one user or assistant message with content",
            param="messages",
        )
    return system, [{"role": role, "content": _content(role, blocks)} for role, blocks in turns]


def _content(role: str, blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if len(blocks) == 1 and blocks[0]["type"] == "text" and blocks[0].keys() == {"type", "text"}:
        return str(blocks[0]["text"])
    if role == "user":
        # Anthropic requires a turn's tool_result blocks to come before anything else.
        blocks.sort(key=lambda block: block["type"] != "tool_result")
    return blocks


def _assistant_blocks(message: Mapping[str, Any], path: str) -> list[dict[str, Any]]:
    if message.get("function_call") is not None:
        raise TranslationError(
            f"{path}.function_call (legacy function calling) is not supported; use tool_calls",
            param=f"{path}.function_call",
        )
    blocks = _parts(message.get("content"), f"{path}.content", _ASSISTANT_PARTS)
    tool_calls = message.get("tool_calls")
    if tool_calls is None:
        return blocks
    if not isinstance(tool_calls, list):
        raise TranslationError(
            f"{path}.tool_calls must be a list, got {show(tool_calls)}",
            param=f"{path}.tool_calls",
        )
    for j, call in enumerate(tool_calls):
        blocks.append(_tool_use(call, f"{path}.tool_calls[{j}]"))
    return blocks


def _tool_use(call: object, path: str) -> dict[str, Any]:
    if not isinstance(call, Mapping) or call.get("type", "function") != "function":
        raise TranslationError(
            f"{path} must be a tool call of type 'function', got {show(call)}", param=path
        )
    call_id = call.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError(
            f"{path}.id must be a string, got {show(call_id)}", param=f"{path}.id"
        )
    function = call.get("function")
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise TranslationError(
            f"{path}.function must be an object with a string 'name', got {show(function)}",
            param=f"{path}.function",
        )
    arguments = function.get("arguments")
    param = f"{path}.function.arguments"
    if not isinstance(arguments, str):
        raise TranslationError(f"{param} must be a JSON string, got {show(arguments)}", param=param)
    try:
        # Some clients send "" for a tool without parameters; that means {}.
        parsed = orjson.loads(arguments) if arguments.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise TranslationError(
            f"{param} is not valid JSON ({exc}): {show(arguments)}", param=param
        ) from exc
    if not isinstance(parsed, dict):
        raise TranslationError(
            f"{param} must encode a JSON object, got {show(arguments)}", param=param
        )
    return {"type": "tool_use", "id": call_id, "name": function["name"], "input": parsed}


def _tool_result(message: Mapping[str, Any], path: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError(
            f"{path}.tool_call_id must be a string, got {show(call_id)}",
            param=f"{path}.tool_call_id",
        )
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    content = message.get("content")
    if isinstance(content, str):
        if content:  # Anthropic's content is optional, and empty text blocks are refused
            block["content"] = content
    else:
        parts = _parts(content, f"{path}.content", _TEXT_ONLY)
        if parts:
            block["content"] = parts
    return block


# --- content parts -------------------------------------------------------------------


def _parts(content: object, path: str, allowed: frozenset[str]) -> list[dict[str, Any]]:
    """``content`` (a string, a list of parts or null) as Anthropic content blocks.

    Empty text is left out: Anthropic refuses empty text blocks, and they say nothing.
    """
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise TranslationError(
            f"{path} must be a string or a list of content parts, got {show(content)}",
            param=path,
        )
    blocks = []
    for k, part in enumerate(content):
        part_path = f"{path}[{k}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if not isinstance(part, Mapping) or kind not in allowed:
            raise TranslationError(
                f"{part_path} must be a content part of type {' or '.join(sorted(allowed))}, "
                f"got {show(part)}",
                param=part_path,
            )
        if kind == "image_url":
            block = _image(part.get("image_url"), f"{part_path}.image_url")
        elif kind == "file":
            block = _file(part.get("file"), f"{part_path}.file")
        else:
            # An assistant's refusal part is what it said, so it stays text.
            text = part.get(kind)
            if not isinstance(text, str):
                raise TranslationError(
                    f"{part_path}.{kind} must be a string, got {show(text)}",
                    param=f"{part_path}.{kind}",
                )
            if not text:
                continue
            block = {"type": "text", "text": text}
        # An Anthropic prompt-caching marker some clients put on OpenAI parts.
        if "cache_control" in part:
            block["cache_control"] = part["cache_control"]
        blocks.append(block)
    return blocks


def _image(value: object, path: str) -> dict[str, Any]:
    url = value.get("url") if isinstance(value, Mapping) else None
    if not isinstance(url, str):
        raise TranslationError(
            f"{path} must be an object with a string 'url', got {show(value)}", param=path
        )
    # OpenAI's "detail" has no Anthropic equivalent and is dropped.
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    media_type, data = _data_url(url, f"{path}.url")
    if media_type == "image/jpg":  # a common misspelling that Anthropic refuses
        media_type = "image/jpeg"
    if media_type not in _IMAGE_TYPES:
        raise TranslationError(
            f"{path}.url must be a JPEG, PNG, GIF or WebP image, got {show(media_type)}",
            param=f"{path}.url",
        )
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _file(value: object, path: str) -> dict[str, Any]:
    # OpenAI file ids mean nothing to Anthropic; inline PDF data maps to a document.
    data_url = value.get("file_data") if isinstance(value, Mapping) else None
    if not isinstance(data_url, str):
        raise TranslationError(
            f"{path} must carry inline 'file_data' (file ids are not supported), got {show(value)}",
            param=path,
        )
    media_type, data = _data_url(data_url, f"{path}.file_data")
    if media_type != "application/pdf":
        raise TranslationError(
            f"{path}.file_data must be a PDF, got {show(media_type)}",
            param=f"{path}.file_data",
        )
    source = {"type": "base64", "media_type": media_type, "data": data}
    return {"type": "document", "source": source}


def _data_url(url: str, path: str) -> tuple[str, str]:
    match = _DATA_URL.fullmatch(url)
    if match is None:
        raise TranslationError(
            f"{path} must be an http(s) URL or a base64 data: URL, got {show(url)}",
            param=path,
        )
    return match[1].lower(), match[2]
