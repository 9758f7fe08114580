"""The pooled HTTP client every upstream talks through (aiohttp).

aiohttp was chosen over httpx by measurement (docs/gateway.md, "Choices we
measured"): on our request shapes it costs less CPU per call, which is what bounds a
gateway on a few cores. One :class:`HTTPTransport` per upstream holds a keep-alive
pool; its errors are translated at this boundary into the
:class:`~hotpath.UpstreamError` tree so no aiohttp type leaks out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any

import aiohttp

from hotpath._errors import UpstreamStreamCutError, UpstreamTimeoutError, UpstreamUnavailableError
from hotpath.providers._sse import SSEParser

__all__ = ["HTTPTransport", "Response"]

_READ_SIZE = 65536


class Response:
    """An upstream answer whose body has not been read yet. Close it (or use
    ``async with``) so the connection goes back to the pool."""

    __slots__ = ("_name", "_raw", "_read_timeout", "headers", "status")

    def __init__(self, raw: aiohttp.ClientResponse, name: str, read_timeout: float) -> None:
        self._raw = raw
        self._name = name
        self._read_timeout = read_timeout
        self.status = raw.status
        self.headers: Mapping[str, str] = raw.headers

    async def read(self) -> bytes:
        """The whole body."""
        try:
            async with asyncio.timeout(self._read_timeout):
                return await self._raw.read()
        except TimeoutError:
            raise self._timeout("no complete body", self._read_timeout) from None
        except aiohttp.ClientError as exc:
            raise self._cut(exc) from exc

    def _timeout(self, what: str, seconds: float) -> UpstreamTimeoutError:
        return UpstreamTimeoutError(
            f"upstream {self._name!r} sent {what} within {seconds} s", upstream=self._name
        )

    def _cut(self, exc: BaseException) -> UpstreamStreamCutError:
        return UpstreamStreamCutError(
            f"upstream {self._name!r} closed the connection mid-body: {exc!r}",
            upstream=self._name,
        )

    async def events(self, first_timeout: float | None = None) -> AsyncIterator[tuple[str, bytes]]:
        """Server-sent events as they arrive, ``(event name, data bytes)``.

        ``first_timeout`` bounds the wait for the first event; every later gap is
        bounded by the read timeout. A body that ends without a blank line after its
        last event raises :class:`UpstreamStreamCutError` for that tail.
        """
        parser = SSEParser()
        content = self._raw.content
        timeout = first_timeout if first_timeout is not None else self._read_timeout
        while True:
            try:
                async with asyncio.timeout(timeout):
                    chunk = await content.readany()
            except TimeoutError:
                raise self._timeout("no stream data", timeout) from None
            except aiohttp.ClientError as exc:
                raise self._cut(exc) from exc
            if not chunk:
                if parser.pending.strip():
                    raise UpstreamStreamCutError(
                        f"upstream {self._name!r} ended the stream inside an event",
                        upstream=self._name,
                    )
                return
            events = parser.feed(chunk)
            if events:
                timeout = self._read_timeout
                for event in events:
                    yield event

    def close(self) -> None:
        """Give the connection back (or drop it if the body was not read to the end)."""
        self._raw.release() if self._raw.content.at_eof() else self._raw.close()

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(
        self, tp: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class HTTPTransport:
    """A keep-alive connection pool to one upstream ``base_url``.

    ``connect_timeout`` bounds opening a connection; ``read_timeout`` bounds waiting
    for the response headers and each later read. Must be started inside the event
    loop that will use it and closed with :meth:`aclose`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        name: str = "upstream",
        headers: Mapping[str, str] | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 600.0,
        max_connections: int = 512,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = name
        self._headers = dict(headers or {})
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"HTTPTransport({self.base_url!r}, name={self.name!r})"

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, limit_per_host=0, ttl_dns_cache=300, use_dns_cache=True
        )
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self._connect_timeout, sock_connect=self._connect_timeout
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers=self._headers,
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        wait: float | None = None,
    ) -> Response:
        """Send a request; returns once the status line and headers are in.

        ``wait`` (default: the read timeout) bounds the wait for the headers.
        """
        session = self._session or self._open()
        wait = self._read_timeout if wait is None else wait
        kwargs: dict[str, Any] = {"data": body, "headers": headers}
        try:
            async with asyncio.timeout(wait):
                raw = await session.request(method, self.base_url + path, **kwargs)
        except TimeoutError:
            raise UpstreamTimeoutError(
                f"upstream {self.name!r} did not answer within {wait} s", upstream=self.name
            ) from None
        except (aiohttp.ClientConnectionError, OSError) as exc:
            if isinstance(exc, aiohttp.ServerTimeoutError | aiohttp.ConnectionTimeoutError):
                raise UpstreamTimeoutError(
                    f"upstream {self.name!r}: connect timed out after {self._connect_timeout} s",
                    upstream=self.name,
                ) from exc
            raise UpstreamUnavailableError(
                f"upstream {self.name!r} at {self.base_url} is unreachable: {exc}",
                upstream=self.name,
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailableError(
                f"upstream {self.name!r} failed: {exc!r}", upstream=self.name
            ) from exc
        return Response(raw, self.name, self._read_timeout)

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
