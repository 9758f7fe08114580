"""An Anthropic upstream: chat completions translated to and from the Messages API.

``base_url`` is Anthropic's API root with its version path
(``https://api.anthropic.com/v1``); requests go to ``{base_url}/messages`` with the
``x-api-key`` and ``anthropic-version`` headers. The translation itself lives in
:mod:`hotpath.providers._anthropic` (pure functions).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import orjson

from hotpath._errors import UpstreamStatusError
from hotpath.providers._anthropic import (
    StreamTranslator,
    UpstreamProtocolError,
    anthropic_error_to_openai,
    chat_to_messages,
    messages_to_chat,
)
from hotpath.providers._base import HTTPProvider, retry_after_seconds

__all__ = ["AnthropicProvider"]

API_VERSION = "2023-06-01"


class AnthropicProvider(HTTPProvider):
    """Speaks Anthropic's Messages API, in OpenAI's terms."""

    kind = "anthropic"
    api_headers = {"anthropic-version": API_VERSION}

    def _auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-api-key": api_key}

    def _error(self, status: int, data: bytes, headers: Mapping[str, str]) -> UpstreamStatusError:
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            parsed = None
        body = anthropic_error_to_openai(status, parsed if isinstance(parsed, dict) else None)
        # 529 (overloaded) is Anthropic's own; clients know 503.
        return UpstreamStatusError(
            f"upstream {self.name!r} answered {status}",
            status=503 if status == 529 else status,
            body=orjson.dumps(body),
            retry_after=retry_after_seconds(headers),
            upstream=self.name,
        )

    def _loads(self, data: bytes) -> dict[str, Any]:
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise UpstreamProtocolError(
                f"upstream {self.name!r} sent a body that is not JSON", upstream=self.name
            ) from exc
        if not isinstance(parsed, dict):
            raise UpstreamProtocolError(
                f"upstream {self.name!r} sent {type(parsed).__name__}, not an object",
                upstream=self.name,
            )
        return parsed

    async def chat(
        self, body: Mapping[str, Any], deployment: str, headers: Mapping[str, str] | None = None
    ) -> bytes:
        request = chat_to_messages(body, model=deployment)
        request.pop("stream", None)
        sent = self._http.request("POST", "/messages", orjson.dumps(request), headers=headers)
        async with await sent as resp:
            self._observe(deployment, resp.status, resp.headers)
            data = await resp.read()
            if resp.status >= 400:
                raise self._error(resp.status, data, resp.headers)
        answer = messages_to_chat(self._loads(data), model=body["model"], created=int(time.time()))
        return orjson.dumps(answer)

    async def chat_stream(
        self, body: Mapping[str, Any], deployment: str, headers: Mapping[str, str] | None = None
    ) -> AsyncGenerator[bytes, None]:
        request = chat_to_messages(body, model=deployment)
        request["stream"] = True
        translator = StreamTranslator(
            model=body["model"], created=int(time.time()), include_usage=True
        )
        resp = await self._http.request(
            "POST",
            "/messages",
            orjson.dumps(request),
            headers=headers,
            wait=self._first_token_timeout,
        )
        async with resp:
            self._observe(deployment, resp.status, resp.headers)
            if resp.status >= 400:
                raise self._error(resp.status, await resp.read(), resp.headers)
            async for event, data in resp.events(self._first_token_timeout):
                for chunk in translator.feed(event, self._loads(data)):
                    yield orjson.dumps(chunk)
                if translator.done:
                    break
        for chunk in translator.finish():
            yield orjson.dumps(chunk)

    async def embeddings(
        self, body: Mapping[str, Any], deployment: str, headers: Mapping[str, str] | None = None
    ) -> bytes:
        error = {
            "error": {
                "message": f"upstream {self.name!r} speaks Anthropic's API, which has no "
                "embeddings endpoint",
                "type": "invalid_request_error",
                "param": "model",
                "code": "unsupported_model",
            }
        }
        raise UpstreamStatusError(
            "no embeddings on Anthropic", status=400, body=orjson.dumps(error), upstream=self.name
        )

    async def models(self) -> list[dict[str, Any]]:
        async with await self._http.request("GET", "/models") as resp:
            data = await resp.read()
            if resp.status >= 400:
                raise self._error(resp.status, data, resp.headers)
        listed = self._loads(data).get("data")
        out = []
        for model in listed if isinstance(listed, list) else ():
            if isinstance(model, dict) and isinstance(model.get("id"), str):
                out.append(
                    {"id": model["id"], "object": "model", "created": 0, "owned_by": self.name}
                )
        return out
