"""Server-sent events: an incremental parser for upstream streams.

Fed byte chunks cut anywhere (mid-line, mid-event), it yields whole events as
``(event, data)`` pairs: ``event`` is the ``event:`` field (``""`` when absent) and
``data`` the ``data:`` lines joined by ``\\n``, as bytes so that an OpenAI chunk can
be relayed without decoding it. Comments (``: ping``) and other fields are skipped.
"""

from __future__ import annotations

__all__ = ["SSEParser"]


class SSEParser:
    """Turns a byte stream into events; keeps the tail of an unfinished event."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[tuple[str, bytes]]:
        """The events completed by ``chunk``."""
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            # CRLF and lone CR are both line ends in SSE; a CR at the very end may be
            # the first half of a CRLF, so it waits for the next chunk.
            keep_cr = buf.endswith(b"\r")
            if keep_cr:
                buf = buf[:-1]
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if keep_cr:
                buf += b"\r"
        events: list[tuple[str, bytes]] = []
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            event = _parse_block(buf[start:end])
            if event is not None:
                events.append(event)
            start = end + 2
        self._buf = buf[start:]
        return events

    @property
    def pending(self) -> bytes:
        """Bytes of an event not yet terminated by a blank line."""
        return self._buf


def _parse_block(block: bytes) -> tuple[str, bytes] | None:
    if block.startswith(b"data: ") and b"\n" not in block:
        return "", block[6:]  # the common case: one data line, no event name
    name = ""
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode("utf-8", "replace")
    if not data and not name:
        return None
    return name, b"\n".join(data)
