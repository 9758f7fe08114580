"""OpenAI chat completions to and from Anthropic's Messages API: pure functions, no I/O.

The gateway accepts ``POST /v1/chat/completions`` and, for an ``anthropic``
upstream, sends :func:`chat_to_messages` of the body to ``POST /v1/messages``,
then answers with :func:`messages_to_chat` of the response, or, when streaming,
with the chunks a :class:`StreamTranslator` makes of each SSE event. An Anthropic
error answer becomes an OpenAI one with :func:`anthropic_error_to_openai`.

Where the two APIs differ, the translation chooses:

* **temperature**: OpenAI's 0..2 is passed through and clamped to Anthropic's
  0..1 (1.5 becomes 1.0), so values up to 1 keep their meaning.
* **response_format**: Anthropic has no JSON mode. ``json_object`` and
  ``json_schema`` append an instruction (with the schema, for ``json_schema``) to
  the system prompt: best effort, not enforced. ``text`` changes nothing.
* **system and developer messages**, wherever they are, become the top-level
  ``system``: a string for one plain text, else a list of text blocks (which keeps
  ``cache_control``).
* **consecutive messages of one role** are merged into one turn (tool results and
  the user's next message included), with ``tool_result`` blocks first.
* **refused** (:class:`TranslationError`): ``n`` > 1, ``logprobs`` / ``top_logprobs``,
  non-empty ``logit_bias``, ``audio`` and non-text ``modalities``, legacy
  ``functions`` / ``function_call``, ``web_search_options``, non-function tools,
  file ids, files other than PDF, images other than JPEG/PNG/GIF/WebP.
* **dropped** (the answer is still a valid answer without them): ``seed``,
  ``presence_penalty``, ``frequency_penalty``, ``store``, ``metadata``,
  ``service_tier``, ``stream_options`` (the gateway reads ``include_usage``),
  ``reasoning_effort``, ``prediction``, ``parallel_tool_calls: true``, a message's
  ``name``, an image's ``detail``, a tool's ``strict``, and unknown fields.
* **in answers**, ``thinking`` blocks and server-tool blocks are dropped, and
  ``pause_turn`` ends the choice with ``finish_reason: "stop"``.
"""

from __future__ import annotations

from hotpath.providers._anthropic_errors import (
    TranslationError,
    UpstreamProtocolError,
    UpstreamStreamError,
    anthropic_error_to_openai,
)
from hotpath.providers._anthropic_request import chat_to_messages
from hotpath.providers._anthropic_response import messages_to_chat
from hotpath.providers._anthropic_stream import StreamTranslator

__all__ = [
    "StreamTranslator",
    "TranslationError",
    "UpstreamProtocolError",
    "UpstreamStreamError",
    "anthropic_error_to_openai",
    "chat_to_messages",
    "messages_to_chat",
]
