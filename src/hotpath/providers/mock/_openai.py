"""OpenAI chat completions and model listing, in OpenAI's exact shapes."""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from hotpath._tokens import count_chat_prompt, encoder_for
from hotpath.providers.mock._config import MockConfig
from hotpath.providers.mock._content import VOCAB, Answer, Source, Spec, generate, request_digest
from hotpath.providers.mock._http import Reply, json_reply, openai_error

__all__ = ["MODELS", "Context", "chat_completions", "list_models"]

MODELS: tuple[str, ...] = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
)
SYSTEM_FINGERPRINT = "fp_hotpath_mock"
_FINISH = {
    "stop": "stop",
    "stop_sequence": "stop",
    "length": "length",
    "tool": "tool_calls",
    "content_filter": "content_filter",
}
_DONE = b"data: [DONE]\n\n"


class Context(Protocol):
    """What a route handler needs from the app."""

    @property
    def config(self) -> MockConfig: ...

    def new_id(self) -> str: ...

    def now(self) -> int: ...


def list_models(ctx: Context) -> Reply:
    data = [
        {"id": m, "object": "model", "created": 1700000000, "owned_by": "hotpath-mock"}
        for m in MODELS
    ]
    return json_reply({"object": "list", "data": data})


def _bad(message: str, param: str | None) -> Reply:
    return openai_error(400, message, param=param)


def _int_param(payload: dict[str, Any], name: str, low: int, high: int) -> int | Reply | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        return _bad(
            f"Invalid value for '{name}': expected an integer in [{low}, {high}], got {value!r}.",
            name,
        )
    return value


def _pick_tool(tools: object, choice: object) -> tuple[str, object] | Reply | None:
    if tools is None or choice == "none":
        return None
    if not isinstance(tools, list) or not all(
        isinstance(t, dict)
        and isinstance(t.get("function"), dict)
        and isinstance(t["function"].get("name"), str)
        for t in tools
    ):
        return _bad(
            "Invalid 'tools': expected a list of {type: 'function', function: {name, ...}}.",
            "tools",
        )
    if not tools:
        return None
    functions = [t["function"] for t in tools]
    wanted: object = None
    if isinstance(choice, dict):
        fn = choice.get("function")
        wanted = fn.get("name") if isinstance(fn, dict) else None
        if wanted is None:
            return _bad(f"Invalid value for 'tool_choice': {choice!r}.", "tool_choice")
    elif choice not in (None, "auto", "required"):
        return _bad(f"Invalid value for 'tool_choice': {choice!r}.", "tool_choice")
    for fn in functions:
        if wanted is None or fn["name"] == wanted:
            return fn["name"], fn.get("parameters")
    return _bad(
        f"Invalid value for 'tool_choice': no function named {wanted!r} in 'tools'.", "tool_choice"
    )


def _format(payload: dict[str, Any]) -> tuple[bool, object] | Reply:
    fmt = payload.get("response_format")
    if fmt is None:
        return False, None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return False, None
    if kind == "json_object":
        return True, None
    if kind == "json_schema":
        js = fmt.get("json_schema")
        schema = js.get("schema") if isinstance(js, dict) else None
        return True, schema if isinstance(schema, dict) else {"type": "object"}
    return _bad(f"Invalid value for 'response_format': {fmt!r}.", "response_format")


def chat_completions(ctx: Context, payload: Any, content_filter: bool) -> Reply:
    """``POST /v1/chat/completions``: a deterministic completion or stream."""
    if not isinstance(payload, dict):
        return _bad("The request body must be a JSON object.", None)
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        return _bad("you must provide a model parameter", "model")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        return _bad("Invalid 'messages': expected a non-empty array of messages.", "messages")
    n = _int_param(payload, "n", 1, 128)
    top = _int_param(payload, "top_logprobs", 0, 20)
    limit = _int_param(payload, "max_completion_tokens", 1, 1 << 31)
    if limit is None:
        limit = _int_param(payload, "max_tokens", 1, 1 << 31)
    stop = payload.get("stop")
    stops = (
        (stop,)
        if isinstance(stop, str)
        else tuple(s for s in stop if isinstance(s, str))
        if isinstance(stop, list)
        else ()
    )
    tools = payload.get("tools")
    tool = _pick_tool(tools, payload.get("tool_choice"))
    fmt = _format(payload)
    if isinstance(n, Reply):
        return n
    if isinstance(top, Reply):
        return top
    if isinstance(limit, Reply):
        return limit
    if isinstance(tool, Reply):
        return tool
    if isinstance(fmt, Reply):
        return fmt
    encoder = encoder_for(model)
    digest = request_digest(
        model,
        messages,
        tools,
        payload.get("tool_choice"),
        payload.get("response_format"),
        payload.get("seed"),
    )
    spec = Spec(
        natural=ctx.config.completion_tokens,
        limit=limit,
        json_mode=fmt[0],
        json_schema=fmt[1],
        tool=tool,
        stops=stops,
        content_filter=content_filter,
    )
    answers = [generate(encoder, digest, i, spec) for i in range(n or 1)]
    completion = sum(a.tokens for a in answers)
    prompt = count_chat_prompt(encoder, messages, tools)
    usage = _usage(prompt, completion)
    logprobs = payload.get("logprobs") is True
    top_n = top or 0
    head = {
        "id": f"chatcmpl-{ctx.new_id()}",
        "object": "chat.completion",
        "created": ctx.now(),
        "model": model,
    }
    if payload.get("stream") is True:
        options = payload.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        frames = _frames(head, answers, usage if include_usage else None, logprobs, top_n)
        return Reply(frames=frames, prompt_tokens=prompt)
    choices = [
        {
            "index": i,
            "message": _message(a),
            "logprobs": _logprobs(a, top_n) if logprobs else None,
            "finish_reason": _FINISH[a.finish],
        }
        for i, a in enumerate(answers)
    ]
    body = {
        **head,
        "choices": choices,
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    return Reply(
        body=orjson.dumps(body), tokens=max(a.tokens for a in answers), prompt_tokens=prompt
    )


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _message(answer: Answer) -> dict[str, Any]:
    tool = answer.tool
    if tool is None:
        return {
            "role": "assistant",
            "content": "".join(answer.pieces),
            "refusal": None,
            "annotations": [],
        }
    call = {
        "id": f"call_{tool.id}",
        "type": "function",
        "function": {"name": tool.name, "arguments": tool.arguments},
    }
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [call],
        "refusal": None,
        "annotations": [],
    }


def _token_logprobs(answer: Answer, top: int) -> list[dict[str, Any]]:
    source = Source(answer.seed + b"logprobs")
    out = []
    for piece, b in zip(answer.pieces, source.take(len(answer.pieces)), strict=True):
        logprob = -round(b / 100, 4)
        alternatives = [{"token": piece, "logprob": logprob, "bytes": list(piece.encode())}]
        for j in range(1, top):
            alt = VOCAB[(b + 37 * j) % len(VOCAB)]
            alternatives.append(
                {"token": alt, "logprob": round(logprob - 0.8 * j, 4), "bytes": list(alt.encode())}
            )
        out.append({**alternatives[0], "top_logprobs": alternatives[:top]})
    return out


def _logprobs(answer: Answer, top: int) -> dict[str, Any]:
    return {"content": _token_logprobs(answer, top), "refusal": None}


def _frames(
    head: dict[str, Any],
    answers: list[Answer],
    usage: dict[str, Any] | None,
    logprobs: bool,
    top: int,
) -> list[bytes]:
    """SSE frames: frame ``i`` carries token ``i`` of every choice; the first adds
    the role deltas, the last adds the finish chunks, the usage chunk and ``[DONE]``."""
    chunk_head = orjson.dumps({**head, "object": "chat.completion.chunk"})[:-1]
    prefix = (
        b"data: "
        + chunk_head
        + b',"service_tier":"default","system_fingerprint":"'
        + SYSTEM_FINGERPRINT.encode()
    )
    prefix += b'","choices":['
    suffix = b'],"usage":null}\n\n' if usage is not None else b"]}\n\n"

    def chunk(choice: dict[str, Any]) -> bytes:
        return prefix + orjson.dumps(choice) + suffix

    steps = max(1, *(len(a.tool.pieces if a.tool else a.pieces) for a in answers))
    frames: list[list[bytes]] = [[] for _ in range(steps)]
    for i, a in enumerate(answers):
        lps = _token_logprobs(a, top) if logprobs and a.tool is None else None
        if a.tool is None:
            delta: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}
            pieces = a.pieces
        else:
            call = {
                "index": 0,
                "id": f"call_{a.tool.id}",
                "type": "function",
                "function": {"name": a.tool.name, "arguments": ""},
            }
            delta = {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None}
            pieces = a.tool.pieces
        first_lp: dict[str, Any] | None = (
            {"content": [], "refusal": None} if lps is not None else None
        )
        frames[0].append(
            chunk({"index": i, "delta": delta, "logprobs": first_lp, "finish_reason": None})
        )
        for k, piece in enumerate(pieces):
            if a.tool is None:
                delta = {"content": piece}
            else:
                delta = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
            lp = {"content": [lps[k]], "refusal": None} if lps is not None else None
            frames[k].append(
                chunk({"index": i, "delta": delta, "logprobs": lp, "finish_reason": None})
            )
    last = frames[-1]
    for i, a in enumerate(answers):
        last.append(
            chunk({"index": i, "delta": {}, "logprobs": None, "finish_reason": _FINISH[a.finish]})
        )
    if usage is not None:
        last.append(prefix + b'],"usage":' + orjson.dumps(usage) + b"}\n\n")
    last.append(_DONE)
    return [b"".join(f) for f in frames]
