"""Anthropic's Messages API (``POST /v1/messages``), in Anthropic's exact shapes."""

from __future__ import annotations

from typing import Any

import orjson

from hotpath._tokens import count_anthropic_prompt, encoder_for
from hotpath.providers.mock._content import Answer, Spec, generate, request_digest
from hotpath.providers.mock._http import Reply, anthropic_error
from hotpath.providers.mock._openai import Context

__all__ = ["messages"]

_STOP = {
    "stop": "end_turn",
    "stop_sequence": "stop_sequence",
    "length": "max_tokens",
    "tool": "tool_use",
    "content_filter": "refusal",
}


def _bad(message: str) -> Reply:
    return anthropic_error(400, message)


def _pick_tool(tools: object, choice: object) -> tuple[str, object] | Reply | None:
    if tools is None:
        return None
    if not isinstance(tools, list) or not all(
        isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools
    ):
        return _bad("tools: expected a list of {name, description, input_schema}")
    kind = choice.get("type") if isinstance(choice, dict) else None
    if choice is not None and kind not in ("auto", "any", "tool", "none"):
        return _bad(f"tool_choice: invalid value {choice!r}")
    if not tools or kind == "none":
        return None
    wanted = choice.get("name") if isinstance(choice, dict) and kind == "tool" else None
    for tool in tools:
        if wanted is None or tool["name"] == wanted:
            return tool["name"], tool.get("input_schema")
    return _bad(f"tool_choice: no tool named {wanted!r} in tools")


def messages(ctx: Context, payload: Any, content_filter: bool) -> Reply:
    """``POST /v1/messages``: a deterministic message or event stream."""
    if not isinstance(payload, dict):
        return _bad("The request body must be a JSON object.")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        return _bad("model: Field required")
    max_tokens = payload.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return _bad(f"max_tokens: expected an integer >= 1, got {max_tokens!r}")
    msgs = payload.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return _bad("messages: expected a non-empty list of messages")
    stop = payload.get("stop_sequences")
    stops = tuple(s for s in stop if isinstance(s, str)) if isinstance(stop, list) else ()
    tools = payload.get("tools")
    tool = _pick_tool(tools, payload.get("tool_choice"))
    if isinstance(tool, Reply):
        return tool
    encoder = encoder_for(model)
    system = payload.get("system")
    digest = request_digest("anthropic", model, system, msgs, tools, payload.get("tool_choice"))
    spec = Spec(
        natural=ctx.config.completion_tokens,
        limit=max_tokens,
        tool=tool,
        stops=stops,
        content_filter=content_filter,
    )
    answer = generate(encoder, digest, 0, spec)
    input_tokens = count_anthropic_prompt(encoder, system, msgs, tools)
    message_id = f"msg_{ctx.new_id()}"
    if payload.get("stream") is True:
        frames = _frames(message_id, model, answer, input_tokens)
        return Reply(frames=frames, prompt_tokens=input_tokens)
    body = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [_block(answer, full=True)],
        "stop_reason": _STOP[answer.finish],
        "stop_sequence": answer.stop_sequence,
        "usage": _usage(input_tokens, answer.tokens),
    }
    return Reply(body=orjson.dumps(body), tokens=answer.tokens, prompt_tokens=input_tokens)


def _usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    }


def _block(answer: Answer, *, full: bool) -> dict[str, Any]:
    tool = answer.tool
    if tool is None:
        return {"type": "text", "text": "".join(answer.pieces) if full else ""}
    arguments: Any = {}
    if full:
        try:
            arguments = orjson.loads(tool.arguments)
        except orjson.JSONDecodeError:  # cut short by max_tokens
            arguments = {}
    return {"type": "tool_use", "id": f"toolu_{tool.id}", "name": tool.name, "input": arguments}


def _event(name: bytes, payload: dict[str, Any]) -> bytes:
    return b"event: " + name + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _frames(message_id: str, model: str, answer: Answer, input_tokens: int) -> list[bytes]:
    """Frame ``i`` carries delta ``i``; the first starts the message and the block,
    the last stops them."""
    start: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _usage(input_tokens, 1),
    }
    first = [
        _event(b"message_start", {"type": "message_start", "message": start}),
        _event(
            b"content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": _block(answer, full=False),
            },
        ),
        _event(b"ping", {"type": "ping"}),
    ]
    if answer.tool is None:
        deltas = [{"type": "text_delta", "text": p} for p in answer.pieces]
    else:
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in answer.tool.pieces]
    frames = [
        _event(b"content_block_delta", {"type": "content_block_delta", "index": 0, "delta": d})
        for d in deltas
    ] or [b""]
    frames[0] = b"".join(first) + frames[0]
    end = {
        "type": "message_delta",
        "delta": {"stop_reason": _STOP[answer.finish], "stop_sequence": answer.stop_sequence},
        "usage": {"output_tokens": answer.tokens},
    }
    frames[-1] += (
        _event(b"content_block_stop", {"type": "content_block_stop", "index": 0})
        + _event(b"message_delta", end)
        + _event(b"message_stop", {"type": "message_stop"})
    )
    return frames
