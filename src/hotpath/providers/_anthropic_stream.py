"""Anthropic Messages stream events as OpenAI ``chat.completion.chunk`` objects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hotpath._errors import UpstreamStreamCutError
from hotpath._errors import short_repr as show
from hotpath.providers._anthropic_errors import (
    UpstreamProtocolError,
    UpstreamStreamError,
)
from hotpath.providers._anthropic_response import finish_reason, usage_to_openai

__all__ = ["StreamTranslator"]


class StreamTranslator:
    """Turns one Anthropic stream, event by event, into the chunks OpenAI would stream.

    Feed every parsed SSE event in order with :meth:`feed`, send the chunks it
    returns, and call :meth:`finish` once the upstream stream ends. The chunks are:

    * on ``message_start``: delta ``{"role": "assistant", "content": ""}``;
    * per text delta: delta ``{"content": text}``;
    * per ``tool_use`` block: a ``tool_calls`` delta with its ``index`` (tool blocks
      counted from 0), ``id``, ``type`` and ``name`` and empty ``arguments``, then one
      per ``input_json_delta`` with the partial ``arguments``. A tool whose input
      arrived empty gets ``"{}"`` so that clients can always parse the arguments;
    * on ``message_delta`` (or ``message_stop`` if it carried no stop reason): an empty
      delta with the mapped ``finish_reason``;
    * from :meth:`finish`, when ``include_usage``: ``choices: []`` with ``usage``
      (input counts from ``message_start``, output from ``message_delta``). As OpenAI
      does, every other chunk then carries ``"usage": None``.

    ``ping`` events, ``thinking`` / ``redacted_thinking`` blocks and their deltas,
    signature and citation deltas, server-tool blocks and unknown event types (the
    Messages API may add some) yield nothing. A state machine, no I/O: not thread-safe.
    """

    def __init__(self, *, model: str, created: int, include_usage: bool) -> None:
        self._model = model
        self._created = created
        self._include_usage = include_usage
        self._id: str | None = None
        self._tools: dict[int, int] = {}  # Anthropic block index -> OpenAI tool index
        self._tools_with_arguments: set[int] = set()
        self._usage: dict[str, Any] = {}
        self._finish_sent = False
        self._done = False
        self._finished = False

    @property
    def done(self) -> bool:
        """Whether ``message_stop`` has been fed: the answer is complete."""
        return self._done

    def feed(self, event: str, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The chunks for one Anthropic SSE event (its ``event:`` name and parsed data).

        Raises :class:`UpstreamStreamError` for an ``error`` event and
        :class:`UpstreamProtocolError` for an event out of place (content before
        ``message_start``) or without the fields its type requires. Events after
        ``message_stop`` are ignored.
        """
        if event == "error":
            error = data.get("error")
            if not isinstance(error, Mapping):
                error = {}
            kind, message = error.get("type"), error.get("message")
            raise UpstreamStreamError(
                kind if isinstance(kind, str) else "api_error",
                message if isinstance(message, str) else f"stream error event: {show(data)}",
            )
        if self._done or event == "ping":
            return []
        if event == "message_start":
            return self._message_start(data)
        if self._id is None:
            raise UpstreamProtocolError(f"Anthropic stream sent {event!r} before message_start")
        if event == "content_block_start":
            return self._block_start(data)
        if event == "content_block_delta":
            return self._block_delta(data)
        if event == "content_block_stop":
            index = self._index(data)
            if index in self._tools and index not in self._tools_with_arguments:
                return [self._tool_chunk(index, {"arguments": "{}"})]
            return []
        if event == "message_delta":
            self._add_usage(data.get("usage"))
            delta = data.get("delta")
            stop_reason = delta.get("stop_reason") if isinstance(delta, Mapping) else None
            if stop_reason is None or self._finish_sent:
                return []
            return [self._finish_chunk(finish_reason(stop_reason))]
        if event == "message_stop":
            self._done = True
            return [] if self._finish_sent else [self._finish_chunk("stop")]
        return []

    def finish(self) -> list[dict[str, Any]]:
        """The chunks left once the upstream stream has ended: the usage chunk, if asked.

        Raises :class:`~hotpath.UpstreamStreamCutError` if ``message_stop`` never came, as
        the answer sent so far may be cut short. Later calls return [].
        """
        if not self._done:
            raise UpstreamStreamCutError("the Anthropic stream ended before message_stop")
        pending = self._include_usage and not self._finished
        self._finished = True
        if not pending:
            return []
        chunk = self._chunk([])
        chunk["usage"] = usage_to_openai(self._usage)
        return [chunk]

    # --- events ----------------------------------------------------------------------

    def _message_start(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        message = data.get("message")
        if not isinstance(message, Mapping) or not isinstance(message.get("id"), str):
            raise UpstreamProtocolError(f"Anthropic message_start lacks a message id: {show(data)}")
        if self._id is not None:
            raise UpstreamProtocolError("Anthropic stream sent a second message_start")
        self._id = f"chatcmpl-{message['id']}"
        self._add_usage(message.get("usage"))
        return [self._delta_chunk({"role": "assistant", "content": ""})]

    def _block_start(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        index = self._index(data)
        block = data.get("content_block")
        if not isinstance(block, Mapping):
            raise UpstreamProtocolError(
                f"Anthropic content_block_start lacks a block: {show(data)}"
            )
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            return [self._delta_chunk({"content": text})] if isinstance(text, str) and text else []
        if kind != "tool_use":
            return []
        tool_id, name = block.get("id"), block.get("name")
        if not isinstance(tool_id, str) or not isinstance(name, str):
            raise UpstreamProtocolError(f"Anthropic tool_use block lacks id or name: {show(data)}")
        self._tools[index] = len(self._tools)
        # The block's "input" is always {} here; the input arrives as input_json_delta.
        return [
            self._tool_chunk(
                index,
                {"name": name, "arguments": ""},
                head={"id": tool_id, "type": "function"},
            )
        ]

    def _block_delta(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        index = self._index(data)
        delta = data.get("delta")
        if not isinstance(delta, Mapping):
            raise UpstreamProtocolError(
                f"Anthropic content_block_delta lacks a delta: {show(data)}"
            )
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            if not isinstance(text, str):
                raise UpstreamProtocolError(f"Anthropic text_delta lacks text: {show(data)}")
            return [self._delta_chunk({"content": text})] if text else []
        if kind == "input_json_delta" and index in self._tools:
            partial = delta.get("partial_json")
            if not isinstance(partial, str):
                raise UpstreamProtocolError(
                    f"Anthropic input_json_delta lacks partial_json: {show(data)}"
                )
            if not partial:
                return []
            self._tools_with_arguments.add(index)
            return [self._tool_chunk(index, {"arguments": partial})]
        return []

    def _index(self, data: Mapping[str, Any]) -> int:
        index = data.get("index")
        if isinstance(index, bool) or not isinstance(index, int):
            raise UpstreamProtocolError(f"Anthropic content block event lacks index: {show(data)}")
        return index

    def _add_usage(self, usage: object) -> None:
        # message_delta's counts are cumulative, so later values replace earlier ones.
        if isinstance(usage, Mapping):
            self._usage.update((k, v) for k, v in usage.items() if v is not None)

    # --- chunks ----------------------------------------------------------------------

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if self._include_usage:
            chunk["usage"] = None
        return chunk

    def _delta_chunk(self, delta: dict[str, Any]) -> dict[str, Any]:
        return self._chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])

    def _tool_chunk(
        self, index: int, function: dict[str, Any], head: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        call = {"index": self._tools[index], **(head or {}), "function": function}
        return self._delta_chunk({"tool_calls": [call]})

    def _finish_chunk(self, reason: str) -> dict[str, Any]:
        self._finish_sent = True
        return self._chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}])
