"""What every upstream provider offers the gateway, whatever API it speaks."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any, Protocol

from hotpath._errors import UpstreamStatusError
from hotpath.providers._http import HTTPTransport

__all__ = ["HTTPProvider", "Provider", "ResponseHook", "retry_after_seconds", "status_error"]


ResponseHook = Callable[[str, int, Mapping[str, str]], None]


class Provider(Protocol):
    """An upstream, spoken to in OpenAI's terms.

    Bodies come in and go out as OpenAI chat-completions / embeddings JSON; a
    provider of another API translates. ``deployment`` is the model name the
    upstream knows; ``headers`` are extra request headers (forwarded from the
    client). Failures raise the :class:`~hotpath.UpstreamError` tree.
    """

    name: str
    kind: str
    # Called with (deployment, status, response headers) for every answer the
    # upstream sends, so traffic control can read its rate-limit headers.
    on_response: ResponseHook | None

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def chat(
        self, body: Mapping[str, Any], deployment: str, headers: Mapping[str, str] | None = None
    ) -> bytes:
        """A non-streamed ``chat.completion``, as JSON bytes."""
        ...

    def chat_stream(
        self, body: Mapping[str, Any], deployment: str, headers: Mapping[str, str] | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The ``chat.completion.chunk`` JSON payloads of a streamed answer, as they
        arrive, without the final ``[DONE]``; the last one carries ``usage``.
        Returns normally only if the stream completed; raises
        :class:`~hotpath.UpstreamStreamCutError` if it was cut."""
        ...

    async def embeddings(
        self, body: Mapping[str, Any], deployment: str, headers: Mapping[str, str] | None = None
    ) -> bytes:
        """An embeddings ``list`` answer, as JSON bytes."""
        ...

    async def models(self) -> list[dict[str, Any]]:
        """The upstream's model list (``data`` of ``GET /models``)."""
        ...


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The Retry-After header in seconds, if it is a number."""
    value = headers.get("retry-after") or headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def status_error(
    name: str, status: int, body: bytes, headers: Mapping[str, str]
) -> UpstreamStatusError:
    return UpstreamStatusError(
        f"upstream {name!r} answered {status}",
        status=status,
        body=body,
        retry_after=retry_after_seconds(headers),
        upstream=name,
    )


class HTTPProvider:
    """What every provider over HTTP shares: a keep-alive pool to ``base_url``, the
    timeouts, and the auth headers its API wants (:meth:`_auth_headers`)."""

    kind = ""
    # Headers this API wants on every request (a config's ``headers`` override them).
    api_headers: Mapping[str, str] = {}

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 600.0,
        first_token_timeout: float = 120.0,
        max_connections: int = 512,
    ) -> None:
        self.name = name
        self.on_response: ResponseHook | None = None
        sent = {
            "content-type": "application/json",
            **self.api_headers,
            **(headers or {}),
            **(self._auth_headers(api_key) if api_key else {}),
        }
        self._first_token_timeout = first_token_timeout
        self._http = HTTPTransport(
            base_url,
            name=name,
            headers=sent,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_connections=max_connections,
        )

    def _auth_headers(self, api_key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key}"}

    def _observe(self, deployment: str, status: int, headers: Mapping[str, str]) -> None:
        hook = self.on_response
        if hook is not None:
            hook(deployment, status, headers)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self._http.base_url!r})"

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        await self._http.aclose()
