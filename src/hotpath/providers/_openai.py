"""An OpenAI-compatible upstream: OpenAI, Azure OpenAI, vLLM, Ollama, llama.cpp server.

The request body goes out as it came in, with ``model`` set to the deployment
name. Streamed requests always ask for ``stream_options.include_usage`` (the
gateway needs the usage to account for the call and to answer later requests that
ask for it from the cache); the gateway drops that chunk for clients that did not
ask. Error bodies are OpenAI-shaped already and are passed back untouched.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any

import orjson

from hotpath._errors import UpstreamStreamCutError
from hotpath.providers._base import HTTPProvider, status_error

__all__ = ["OpenAIProvider"]


class OpenAIProvider(HTTPProvider):
    """Speaks the OpenAI API to ``base_url`` (which ends in ``/v1`` or the
    provider's equivalent)."""

    kind = "openai"

    async def _post(
        self,
        path: str,
        payload: Mapping[str, Any],
        deployment: str,
        headers: Mapping[str, str] | None,
    ) -> bytes:
        request = self._http.request("POST", path, orjson.dumps(payload), headers=headers)
        async with await request as resp:
            self._observe(deployment, resp.status, resp.headers)
            data = await resp.read()
            if resp.status >= 400:
                raise status_error(self.name, resp.status, data, resp.headers)
            return data

    async def chat(
        self, body: Mapping[str, Any], deployment: str, headers: Mapping[str, str] | None = None
    ) -> bytes:
        payload = {**body, "model": deployment}
        return await self._post("/chat/completions", payload, deployment, headers)

    async def chat_stream(
        self, body: Mapping[str, Any], deployment: str, headers: Mapping[str, str] | None = None
    ) -> AsyncGenerator[bytes, None]:
        options = body.get("stream_options")
        payload = {
            **body,
            "model": deployment,
            "stream": True,
            "stream_options": {**(options or {}), "include_usage": True},
        }
        resp = await self._http.request(
            "POST",
            "/chat/completions",
            orjson.dumps(payload),
            headers=headers,
            wait=self._first_token_timeout,
        )
        async with resp:
            self._observe(deployment, resp.status, resp.headers)
            if resp.status >= 400:
                raise status_error(self.name, resp.status, await resp.read(), resp.headers)
            async for _event, data in resp.events(self._first_token_timeout):
                if data == b"[DONE]":
                    return
                if data.startswith(b'{"error"'):
                    raise status_error(self.name, 500, data, {})
                yield data
        raise UpstreamStreamCutError(
            f"upstream {self.name!r} ended the stream without [DONE]", upstream=self.name
        )

    async def embeddings(
        self, body: Mapping[str, Any], deployment: str, headers: Mapping[str, str] | None = None
    ) -> bytes:
        payload = {**body, "model": deployment}
        return await self._post("/embeddings", payload, deployment, headers)

    async def models(self) -> list[dict[str, Any]]:
        async with await self._http.request("GET", "/models") as resp:
            data = await resp.read()
            if resp.status >= 400:
                raise status_error(self.name, resp.status, data, resp.headers)
        listed = orjson.loads(data).get("data")
        return [m for m in listed if isinstance(m, dict)] if isinstance(listed, list) else []
