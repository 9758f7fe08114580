"""Load for ``bench.gateway``: wrk runs (throughput) and a sequential raw-socket client
(latency at concurrency 1, time to first token).

The raw-socket client sends each request in one write on a keep-alive connection
with TCP_NODELAY, so the client adds the same small, fixed cost to every target and
the difference between two targets is the proxy's own.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.gateway_procs import HOST, MASTER_KEY

PATH = "/v1/chat/completions"
HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {MASTER_KEY}"}
QUESTION = "Summarise the design of a tiered cache for LLM answers in three sentences."

__all__ = ["Conn", "WrkRun", "body", "run_wrk", "wrk_script"]


def body(model: str, prompt: str, *, stream: bool = False) -> bytes:
    payload: dict[str, object] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": prompt},
        ],
    }
    if stream:
        payload["stream"] = True
    return orjson.dumps(payload)


# --------------------------------------------------------------------------- wrk


@dataclass(frozen=True)
class WrkRun:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # connect + read + write + timeout + status >= 400
    non2xx: int  # wrk's "Non-2xx or 3xx responses" line


_LUA_HEAD = """\
wrk.method = "POST"
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("HOTPATH %.0f %.0f %.1f %.1f %.0f\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""
# A per-request counter makes every prompt new: each request is a cache miss.
_LUA_UNIQUE = """\
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, string.format({fmt}, n))
end
"""
_LUA_FIXED = """\
local f = assert(io.open("{path}", "rb"))
wrk.body = f:read("*a")
f:close()
"""


def wrk_script(tmp: Path, name: str, model: str, *, unique: str | None) -> Path:
    """A Lua script POSTing chat completions for *model*: the same body every time,
    or (``unique=RUN_ID``) a prompt numbered per request."""
    headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in HEADERS.items())
    lua = _LUA_HEAD.format(headers=headers)
    if unique is None:
        data = tmp / f"{name}.json"
        data.write_bytes(body(model, QUESTION))
        lua += _LUA_FIXED.format(path=data)
    else:
        fmt = body(model, f"{unique} #%d: {QUESTION}").decode()
        lua += _LUA_UNIQUE.format(fmt="[[" + fmt + "]]")
    script = tmp / f"{name}.lua"
    script.write_text(lua)
    return script


def run_wrk(port: int, script: Path, conns: int, seconds: float) -> WrkRun:
    """One wrk run, one thread (wrk shares the 2 cores with the servers)."""
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{seconds:g}s", "--timeout", "30s", "--latency"]
    argv += ["-s", str(script)]
    argv.append(f"http://{HOST}:{port}{PATH}")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out.stdout)
    for line in out.stdout.splitlines():
        if line.startswith("HOTPATH "):
            req, dur, p50, p99, err = (float(x) for x in line.split()[1:])
            return WrkRun(
                req / (dur / 1e6),
                p50 / 1000,
                p99 / 1000,
                int(req),
                int(err),
                int(non2xx.group(1)) if non2xx else 0,
            )
    raise RuntimeError(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")


# --------------------------------------------------------------------------- raw client


class Conn:
    """One keep-alive HTTP/1.1 connection; requests one at a time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.create_connection((HOST, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.head = (
            f"POST {PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())
        ).encode()

    def close(self) -> None:
        self.sock.close()

    def _recv(self) -> None:
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionError(f"port {self.port} closed the connection")
        self.buf += data

    def send(self, payload: bytes, extra: str = "") -> None:
        self.sock.sendall(
            self.head + f"{extra}Content-Length: {len(payload)}\r\n\r\n".encode() + payload
        )

    def read_head(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self.buf:
            self._recv()
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return int(lines[0].split()[1]), headers

    def read_body(self, headers: dict[str, str]) -> bytes:
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n:
                self._recv()
            out, self.buf = self.buf[:n], self.buf[n:]
            return out
        parts: list[bytes] = []
        while True:
            part = self._chunk()
            if part is None:
                self._recv()
            elif part == b"":
                return b"".join(parts)
            else:
                parts.append(part)

    def _chunk(self) -> bytes | None:
        """The next chunk of a chunked body (b"" for the last one), None if incomplete."""
        end = self.buf.find(b"\r\n")
        if end < 0:
            return None
        size = int(self.buf[:end].split(b";")[0], 16)
        if len(self.buf) < end + 2 + size + 2:
            return None
        data = self.buf[end + 2 : end + 2 + size]
        self.buf = self.buf[end + 2 + size + 2 :]
        return data

    def request(self, payload: bytes, extra: str = "") -> tuple[int, dict[str, str], bytes, int]:
        """Status, headers, body and elapsed ns of one request."""
        t0 = time.perf_counter_ns()
        self.send(payload, extra)
        status, headers = self.read_head()
        data = self.read_body(headers)
        return status, headers, data, time.perf_counter_ns() - t0

    def stream_ttft(self, payload: bytes, extra: str = "") -> tuple[int, bytes]:
        """ns from sending a streaming request to the first ``data:`` line whose delta
        carries content, and the whole SSE body (read to the end)."""
        t0 = time.perf_counter_ns()
        self.send(payload, extra)
        status, headers = self.read_head()
        if status != 200 or "content-length" in headers:
            raise RuntimeError(f"stream: status {status}, {self.read_body(headers)[:300]!r}")
        parts: list[bytes] = []
        pending = b""
        first = 0
        while True:
            part = self._chunk()
            if part is None:
                self._recv()
                continue
            if part == b"":
                break
            parts.append(part)
            if first:
                continue
            pending += part
            *lines, pending = pending.split(b"\n")
            if any(_has_content(line) for line in lines):
                first = time.perf_counter_ns() - t0
        if not first:
            raise RuntimeError(f"stream carried no content: {b''.join(parts)[:300]!r}")
        return first, b"".join(parts)


def _has_content(line: bytes) -> bool:
    if not line.startswith(b"data: {"):
        return False
    choices = orjson.loads(line[6:]).get("choices") or [{}]
    return bool((choices[0].get("delta") or {}).get("content"))
