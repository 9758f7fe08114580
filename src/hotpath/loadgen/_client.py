"""Sending one request and timing it: :class:`HttpSender` and its :class:`Outcome`.

The client is aiohttp on the caller's event loop (uvloop from the CLI), the one
the gateway uses for its upstreams: on the gateway's own measurements it costs a
fifth of httpx's CPU per call (docs/gateway.md, "Choices we measured"), and a
load generator's client must not be what limits the rate. A non-streamed answer
is read whole and its ``usage`` parsed; a stream is read line by line, parsing
chunks only until the first one with content (the time to first token) and then
only the one carrying ``usage``.

Errors are outcomes, not exceptions, each of one kind: ``HTTP 429`` (any status
but 200, by code), ``timeout``, ``connect`` (no connection), ``disconnect`` (the
server closed it mid-answer), ``truncated stream`` (no ``[DONE]``), ``stream
error`` (an error event inside a stream) or ``bad response`` (not JSON).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import aiohttp
import orjson

from hotpath._reply import has_content, usage_of
from hotpath.loadgen._workload import RequestSpec

__all__ = ["HttpSender", "Outcome"]

_USAGE = re.compile(rb'"usage":\s*\{')


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What one request got. ``end`` and ``first_token`` are times of the run's
    clock: when the answer was complete (or failed) and, for a stream, when the
    first chunk with content arrived. ``cache``, ``tier`` and ``coalesced`` are
    a hotpath gateway's ``x-hotpath-*`` headers (``None`` elsewhere)."""

    end: float
    status: int = 200
    error: str | None = None
    first_token: float | None = None
    cache: str | None = None
    tier: str | None = None
    coalesced: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _RequestFailedError(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class HttpSender:
    """Sends chat-completion requests to one OpenAI-compatible base URL.

    ``async with HttpSender(url, clock=...) as send: outcome = await send(spec)``.
    ``connections`` bounds the pool; ``timeout`` each request, headers to body's
    end. ``api_key`` goes out as ``Authorization: Bearer``; ``headers`` are added to
    every request.
    """

    def __init__(
        self,
        base_url: str,
        *,
        clock: Callable[[], float],
        connections: int,
        timeout: float,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.url = f"{base_url.rstrip('/')}/chat/completions"
        self._clock = clock
        self._connections = connections
        self._timeout = timeout
        self._headers = {"content-type": "application/json", **(headers or {})}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(limit=self._connections, limit_per_host=0)
        self._http = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            skip_auto_headers=("User-Agent",),
        )
        return self

    async def __aexit__(
        self, tp: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def __call__(self, spec: RequestSpec) -> Outcome:
        http = self._http
        if http is None:
            raise RuntimeError("HttpSender: use it inside 'async with'")
        clock = self._clock
        first: float | None = None
        status = 0
        try:
            async with http.post(self.url, data=spec.body, headers=self._headers) as resp:
                status = resp.status
                if status != 200:
                    await resp.read()
                    raise _RequestFailedError(f"HTTP {status}")
                if spec.stream:
                    first, tokens = await self._read_stream(resp)
                else:
                    tokens = usage_of(orjson.loads(await resp.read()))
                h = resp.headers
                cache, tier = h.get("x-hotpath-cache"), h.get("x-hotpath-cache-tier")
                coalesced = h.get("x-hotpath-coalesced") == "true"
        except _RequestFailedError as exc:
            return Outcome(end=clock(), status=status, error=exc.kind, first_token=first)
        except TimeoutError:
            return Outcome(end=clock(), status=status, error="timeout", first_token=first)
        except aiohttp.ClientConnectorError:
            return Outcome(end=clock(), status=status, error="connect")
        except (aiohttp.ClientError, ConnectionError):
            return Outcome(end=clock(), status=status, error="disconnect", first_token=first)
        except ValueError:  # unparsable JSON, an over-long line
            return Outcome(end=clock(), status=status, error="bad response", first_token=first)
        return Outcome(
            end=clock(),
            first_token=first,
            cache=cache,
            tier=tier,
            coalesced=coalesced,
            prompt_tokens=tokens[0],
            completion_tokens=tokens[1],
        )

    async def _read_stream(
        self, resp: aiohttp.ClientResponse
    ) -> tuple[float | None, tuple[int, int]]:
        first: float | None = None
        tokens = (0, 0)
        done = False
        async for line in resp.content:
            if not line.startswith(b"data:"):
                continue
            data = line[5:].lstrip()  # the space after "data:" is optional in SSE
            if data.startswith(b"[DONE]"):
                done = True
                continue
            # Parsed only when it matters: chunks until the first token, the usage
            # (compact or spaced JSON) and errors.
            if first is None or _USAGE.search(data) is not None or b'"error"' in data:
                chunk = orjson.loads(data)
                if isinstance(chunk, dict) and chunk.get("error") is not None:
                    raise _RequestFailedError("stream error")
                if first is None and has_content(chunk):
                    first = self._clock()
                if isinstance(chunk, dict) and chunk.get("usage"):
                    tokens = usage_of(chunk)
        if not done:
            raise _RequestFailedError("truncated stream")
        return first, tokens
