"""Which ASGI server and which upstream HTTP client the gateway should use, on our workload.

Run: ``python -m bench.gateway_choices`` (about 5 minutes; needs ``wrk``, which
``scripts/ensure-wrk`` installs when missing and we are root). Writes
bench/results/gateway_choices.md. ``--quick`` does one short round of everything and
only prints (a smoke test, not figures to decide on).

1. ASGI servers (``bench.gateway_choices_servers``): uvicorn (uvloop + httptools) and
   granian (ASGI), with uvicorn + h11 and granian RSGI for reference, each serving the
   raw app of ``bench.gateway_choices_app`` in its own process, loaded by wrk; plus
   start-up time, workers sharing a port, graceful shutdown, running in a thread, client
   disconnect during a stream, and TCP_NODELAY.
2. Upstream clients (``bench.gateway_choices_clients``): aiohttp, httpx, httpx with
   ``http2=True``, against a local server in another process; client CPU per request,
   and what each does on timeouts, cut streams, cancellation and pool limits.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import uvloop

from bench.gateway_choices_clients import (
    CONC_SECONDS,
    CONC_TASKS,
    IDLE_N,
    SEQ_N,
    STREAM_N,
    ClientResults,
    ClientRuns,
    bench_clients,
    p50_p99,
)
from bench.gateway_choices_servers import (
    BASE,
    ROOT,
    SERVERS,
    ServerResults,
    Wrk,
    bench_servers,
)
from bench.timing import machine

RESULTS = Path(__file__).resolve().parent / "results"
LOAD_AT_START = os.getloadavg()
SECONDS = 5
REPEATS = 3
PACKAGES = [
    "uvicorn", "uvloop", "httptools", "h11", "granian", "aiohttp", "httpx", "httpcore",
    "h2", "anyio", "httpx2", "orjson",
]  # fmt: skip


def _sh(*argv: str) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError:
        return "?"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def header(seconds: float, repeats: int) -> list[str]:
    pkgs = ", ".join(f"{p} {version(p)}" for p in PACKAGES)
    return [
        "# Gateway choices: ASGI server and upstream HTTP client",
        "",
        f"Machine: {machine()}; `nproc` = {_sh('nproc')}; nothing pinned. "
        f"Date: {_sh('date', '-u')}. {_sh('wrk', '-v')}. Load average (1 min) when the "
        f"run started: {LOAD_AT_START[0]:.2f}; other work on the machine is not controlled.",
        "",
        f"Packages: {pkgs}.",
        "",
        f"Produced by `python -m bench.gateway_choices`: wrk runs of {seconds:g} s, "
        f"{repeats} repeats per figure (servers started afresh each repeat, in rotating "
        "order); figures are medians over repeats. wrk (one thread) shares the 2 cores with "
        "the server under test, as a sidecar load balancer would.",
    ]


# --------------------------------------------------------------------------- servers


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def _route_table(res: ServerResults, route: str) -> list[str]:
    lines = [
        "| server | c=1 p50 / p99 (µs) | c=1 p50 ratio | c=32 req/s | c=32 ratio "
        "| c=32 p50 / p99 (ms) | errors |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    base1, base32 = res.median(BASE, route, 1, 1), res.median(BASE, route, 32, 1)
    for spec in SERVERS:
        one, many = res.median(spec.name, route, 1, 1), res.median(spec.name, route, 32, 1)
        lat = f"{one.p50_us:.0f} / {one.p99_us:.0f}" if one else "-"
        r1 = _ratio(one.p50_us if one else None, base1.p50_us if base1 else None)
        rps = f"{many.rps:,.0f}" if many else "-"
        r32 = _ratio(many.rps if many else None, base32.rps if base32 else None)
        ms = f"{many.p50_us / 1000:.1f} / {many.p99_us / 1000:.1f}" if many else "-"
        if one is None and many is None:
            continue
        errors = (one.errors if one else 0) + (many.errors if many else 0)
        lines.append(f"| {spec.note} | {lat} | {r1} | {rps} | {r32} | {ms} | {errors} |")
    return lines


def _workers_table(res: ServerResults) -> list[str]:
    lines = [
        "| server | JSON req/s, 2 workers | x 1 worker | stream req/s, 2 workers | x 1 worker "
        "| 32 connections at once: busier / other worker, 5 bursts |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for spec in SERVERS:
        if not spec.primary:
            continue
        cells = []
        for route in ("json", "stream"):
            two, one = res.median(spec.name, route, 32, 2), res.median(spec.name, route, 32, 1)
            cells += [
                f"{two.rps:,.0f}" if two else "-",
                _ratio(two.rps if two else None, one.rps if one else None),
            ]
        spread = res.spread.get(spec.name)
        split = ", ".join(f"{n}/{32 - n}" for n in spread) if spread else "-"
        lines.append(f"| {spec.note} | {' | '.join(cells)} | {split} |")
    return lines


def _nodelay_table(res: ServerResults) -> list[str]:
    modes = list(next(iter(res.nodelay.values())).keys()) if res.nodelay else []
    lines = [
        "| server | " + " | ".join(modes) + " |",
        "| --- |" + " --- |" * len(modes),
    ]
    for spec in SERVERS:
        figs = res.nodelay.get(spec.name, {})
        cells = [
            f"{figs[m][0]:.2f} / {figs[m][1]:.1f} ({figs[m][2]} ≥ 30 ms)" if m in figs else "-"
            for m in modes
        ]
        lines.append(f"| {spec.note} | " + " | ".join(cells) + " |")
    return lines


def _features_table(res: ServerResults) -> list[str]:
    lines = ["| server | start-up (ms) | SIGTERM during a 1 s stream | client gone mid-stream |"]
    lines.append("| --- | --- | --- | --- |")
    for spec in SERVERS:
        start = statistics.median(res.startup[spec.name]) * 1000 if spec.name in res.startup else 0
        lines.append(
            f"| {spec.note} | {start:.0f} | {res.graceful.get(spec.name, '-')} "
            f"| {res.disconnect.get(spec.name, '-')} |"
        )
    return lines


def _m(res: ServerResults, server: str, route: str, conns: int) -> Wrk:
    w = res.median(server, route, conns, 1)
    assert w is not None
    return w


def server_choice(res: ServerResults) -> list[str]:
    u, g = "uvicorn", "granian"
    j1u, j1g = _m(res, u, "json", 1), _m(res, g, "json", 1)
    s1u, s1g = _m(res, u, "stream", 1), _m(res, g, "stream", 1)
    j32 = _m(res, g, "json", 32).rps / _m(res, u, "json", 32).rps
    s32 = _m(res, g, "stream", 32).rps / _m(res, u, "stream", 32).rps
    rsgi = res.median("granian-rsgi", "stream", 32, 1)
    rsgi_s32 = rsgi.rps / _m(res, u, "stream", 32).rps if rsgi else 0.0
    lat_j, lat_s = j1g.p50_us / j1u.p50_us, s1g.p50_us / s1u.p50_us
    facts = (
        f"One request at a time, granian's p50 is {lat_j:.2f}x uvicorn's on the cache-hit "
        f"JSON route ({j1g.p50_us:.0f} vs {j1u.p50_us:.0f} µs) and {lat_s:.2f}x on the stream "
        f"({s1g.p50_us:.0f} vs {s1u.p50_us:.0f} µs); at 32 connections granian/uvicorn req/s "
        f"is {j32:.2f} on JSON and {s32:.2f} on the 40-message stream."
    )
    if s32 > 1.05 or j32 > 1.05:
        edge = (
            "granian's edge is throughput at 32 connections"
            + (" on streams, i.e. many back-to-back ASGI body messages, which real streams "
               "(paced by upstream tokens) rarely produce" if s32 > 1.05 else "")
            + "."
        )  # fmt: skip
    else:
        edge = "granian has no throughput edge here to trade for that latency."
    u_spread = res.spread.get(u, [])
    lopsided = bool(u_spread) and statistics.median(u_spread) >= 28
    spread = (
        " One caveat for uvicorn: its workers share one listening socket, and a burst of "
        f"keep-alive connections lands mostly on one worker (busier worker took "
        f"{', '.join(str(n) for n in u_spread)} of 32 in 5 bursts; granian, with a "
        "SO_REUSEPORT socket per worker, spreads them). Behind a proxy with few long-lived "
        "connections, run one uvicorn process per core, each passing its own SO_REUSEPORT "
        "socket to `Server.run(sockets=[...])` (not measured here), rather than `--workers`."
        if lopsided
        else ""
    )
    # The rule: a cache hit is about latency; granian must not be slower one-at-a-time and
    # must win throughput clearly (>= 1.2x on both routes) to be worth an experimental
    # embedded mode in the test suite.
    if lat_j <= 1.1 and lat_s <= 1.1 and j32 >= 1.2 and s32 >= 1.2:
        verdict = (
            "**granian (ASGI interface).** " + facts + " It is at least as fast one request at "
            "a time and clearly ahead under load; the in-thread embedded server used by the "
            "tests is marked experimental, so pin granian's version."
        )
    else:
        verdict = (
            "**uvicorn with uvloop + httptools** (`--loop uvloop --http httptools`). "
            + facts
            + " A cache hit exists to be fast one request at a time, and there uvicorn wins; "
            + edge
            + " Both pass the behaviour checks above (the app sees `http.disconnect` from "
            "`receive()` within milliseconds while streaming, in-flight streams finish on "
            "SIGTERM and new connections are refused), and uvicorn runs in a test thread "
            "through its public `Server` API, port 0 included, while granian's embedded server "
            "calls itself experimental. Revisit if streaming fan-out becomes the bottleneck: "
            f"granian's RSGI interface streams at {rsgi_s32:.1f}x uvicorn's req/s, but it is "
            "not ASGI, so the app would be written against it." + spread
        )
    return ["#### Choice: ASGI server", "", verdict]


def server_section(res: ServerResults) -> list[str]:
    lines = [
        "",
        "### 1. ASGI server",
        "",
        "One raw ASGI app (`bench/gateway_choices_app.py`, no framework), the gateway's "
        "cache-hit path: POST of a 1.1 KB chat-completions body -> `orjson.loads` -> canonical "
        "key (`orjson.dumps(OPT_SORT_KEYS)` of 7 fields) -> `blake2b(digest_size=16)` -> dict "
        "lookup -> 1.2 KB JSON answer with Content-Length and two custom headers; or, for "
        '`"stream": true`, 40 SSE chunks of ~170 B, each its own `http.response.body` '
        "(`more_body=True`), then `data: [DONE]`. Granian RSGI serves the same logic through "
        "its own protocol. Servers: 1 worker unless said; `--loop uvloop`, access log off. "
        "wrk: `-t1 -c1` for latency, `-t1 -c32` for throughput; ratio = server / uvicorn "
        "(for latency lower is better, for req/s higher is better).",
        "",
    ]
    if res.problems:
        lines += ["**Answer check failed:** " + "; ".join(res.problems), ""]
    lines += ["#### Cache-hit JSON route, 1 worker", "", *_route_table(res, "json"), ""]
    lines += ["#### Streaming route (40 chunks + [DONE]), 1 worker", ""]
    lines += [*_route_table(res, "stream"), ""]
    lines += [
        "#### Two workers sharing the port (c=32)",
        "",
        "Three processes on two cores (wrk is the third), so this shows whether a second "
        "worker helps at all here, not how it scales on a bigger box. Last column: how 32 "
        "keep-alive connections opened at once landed on the two workers: uvicorn's workers "
        "share one listening socket and whichever wakes first accepts most of the burst; "
        "granian gives each worker its own SO_REUSEPORT socket and the kernel spreads "
        "connections by hash.",
        "",
        *_workers_table(res),
        "",
        "#### Start-up, shutdown, client disconnect",
        "",
        "Start-up: from spawning the process to the first 200 answer (median). SIGTERM: sent "
        "50 ms into a 1 s stream (20 chunks 50 ms apart); a new request is tried 200 ms "
        "later. Client gone: the client reads the first chunk of a 30-chunk stream, closes "
        "the socket; the app watches `receive()` (RSGI: `client_disconnect()`) in a task "
        "and keeps sending. uvicorn's exit status -15 is by design: it re-raises the signal "
        "after its graceful shutdown.",
        "",
        *_features_table(res),
        "",
        "In a test thread (in-process, uvloop):",
        "",
        *[f"- {name}: {text}" for name, text in res.thread.items()],
        "",
        "#### TCP_NODELAY: request head and body in two writes on a keep-alive connection",
        "",
        "p50 / max ms per request over 20 requests (count of requests ≥ 30 ms). Here, with "
        "Nagle left on in the *client*, every server shows the 40 ms stall: the body write "
        "waits for the ACK of the head, which the server's kernel delays (delayed ACK); no "
        "server setting avoids it. With TCP_NODELAY on the client none does, so every "
        "server sets NODELAY on its own side (a server without it would stall its streamed "
        "chunks the same way). Our upstream clients set it (section 2); wrk sends each "
        "request in one write.",
        "",
        *_nodelay_table(res),
        "",
        *server_choice(res),
    ]
    return lines


# --------------------------------------------------------------------------- clients


def _client_table(runs: dict[str, ClientRuns], base_name: str) -> list[str]:
    base = runs[base_name]
    bcpu, brps = statistics.median(base.seq_cpu_us), statistics.median(base.conc_rps)
    lines = [
        "| client | protocol | seq p50 / p99 (µs) | seq CPU µs/req | CPU ratio "
        "| c=32 req/s | ratio | c=32 CPU µs/req | seq, 32 idle pooled: p50 / p99 (µs) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in runs.items():
        p50, p99 = p50_p99(r.seq_us)
        i50, i99 = p50_p99(r.idle_us)
        cpu, rps = statistics.median(r.seq_cpu_us), statistics.median(r.conc_rps)
        ccpu = statistics.median(r.conc_cpu_us)
        lines.append(
            f"| {name} | {r.version} | {p50:.0f} / {p99:.0f} | {cpu:.0f} | {cpu / bcpu:.2f} "
            f"| {rps:,.0f} | {rps / brps:.2f} | {ccpu:.0f} | {i50:.0f} / {i99:.0f} |"
        )
    return lines


def _stream_table(runs: dict[str, ClientRuns], base_name: str) -> list[str]:
    base = runs[base_name]
    bcpu = statistics.median(base.stream_cpu_us)
    ball, _ = p50_p99(base.all_us)
    lines = [
        "| client | first event p50 / p99 (µs) | all 41 events p50 / p99 (µs) | ratio "
        "| CPU µs/stream | CPU ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in runs.items():
        if not r.ttfb_us:
            continue
        f50, f99 = p50_p99(r.ttfb_us)
        a50, a99 = p50_p99(r.all_us)
        cpu = statistics.median(r.stream_cpu_us)
        lines.append(
            f"| {name} | {f50:.0f} / {f99:.0f} | {a50:.0f} / {a99:.0f} | {a50 / ball:.2f} "
            f"| {cpu:.0f} | {cpu / bcpu:.2f} |"
        )
    return lines


def _behaviour_table(res: ClientResults) -> list[str]:
    names = list(res.behaviour)
    checks = list(res.behaviour[names[0]].rows)
    lines = ["| check | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for check in checks:
        cells = [res.behaviour[n].rows.get(check, "-") for n in names]
        lines.append(f"| {check} | " + " | ".join(cells) + " |")
    warn = [
        "none" if not res.behaviour[n].warnings else "; ".join(res.behaviour[n].warnings[:5])
        for n in names
    ]
    lines.append("| warnings, unraisables, loop errors (all of the above, then close + gc) | "
                 + " | ".join(warn) + " |")  # fmt: skip
    lines.append(
        "| separate connect / read timeouts | `ClientTimeout(sock_connect=, sock_read=, "
        "total=)` (total defaults to 300 s: set `total=None` for long streams) | "
        "`Timeout(connect=, read=, write=, pool=)` |"
    )
    lines.append(
        "| pool limits | `TCPConnector(limit=100, limit_per_host=0)`, "
        "`keepalive_timeout=15` | `Limits(max_connections=100, max_keepalive_connections=20, "
        "keepalive_expiry=5)` |"
    )
    lines.append(
        "| streaming iteration | `async for line in resp.content` (bytes lines), "
        "`iter_chunked(n)`, `iter_any()` | `async with client.stream(...)`, `aiter_lines()` "
        "(str), `aiter_bytes()`, `aiter_raw()` |"
    )
    return lines


def client_choice(res: ClientResults) -> list[str]:
    a, h = res.h1["aiohttp"], res.h1["httpx"]
    h2 = res.h1.get("httpx http2=True (h1 fallback)")
    a_cpu, h_cpu = statistics.median(a.seq_cpu_us), statistics.median(h.seq_cpu_us)
    a_rps, h_rps = statistics.median(a.conc_rps), statistics.median(h.conc_rps)
    a_s, h_s = statistics.median(a.stream_cpu_us), statistics.median(h.stream_cpu_us)
    a_idle, _ = p50_p99(a.idle_us)
    h_idle, _ = p50_p99(h.idle_us)
    h_seq, _ = p50_p99(h.seq_us)
    prior = res.h2.get("httpx h2 prior knowledge")
    h2_note = ""
    if prior and "httpx" in res.h2 and "aiohttp" in res.h2:
        p_cpu = statistics.median(prior.seq_cpu_us)
        ratio = p_cpu / statistics.median(res.h2["httpx"].seq_cpu_us)
        vs_a = p_cpu / statistics.median(res.h2["aiohttp"].seq_cpu_us)
        h2_note = (
            f" HTTP/2 does not close the gap: against granian, httpx over h2 (prior knowledge) "
            f"costs {ratio:.2f}x the CPU per request of httpx over HTTP/1.1, {vs_a:.1f}x "
            "aiohttp's"
        )
        if h2:
            fb = statistics.median(h2.seq_cpu_us) / h_cpu
            h2_note += f"; `http2=True` on a cleartext URL is plain HTTP/1.1 ({fb:.2f}x httpx)"
        h2_note += (
            ". Its gain would be fewer TLS connections to one provider, which this local "
            "benchmark cannot show."
        )
    clean = all(
        not b.warnings and not any("**" in v for v in b.rows.values())
        for b in res.behaviour.values()
    )
    a_ccpu, h_ccpu = statistics.median(a.conc_cpu_us), statistics.median(h.conc_cpu_us)
    idle = (
        f" With those ~32 connections idle in the pool, a sequential httpx request takes "
        f"{h_idle:.0f} µs (p50) against {h_seq:.0f} µs with one (aiohttp: {a_idle:.0f} µs)."
        if h_idle > 1.2 * h_seq
        else ""
    )
    verdict = ("**aiohttp**" if a_cpu < h_cpu and a_rps > h_rps else "**httpx**") + (
        f". The gateway is CPU-bound on 2 cores, and the client's CPU per request is the "
        f"cost that scales: aiohttp spends {a_cpu:.0f} µs of CPU per sequential 1 KB POST "
        f"against httpx's {h_cpu:.0f} µs ({h_cpu / a_cpu:.1f}x), {a_s:.0f} vs {h_s:.0f} µs "
        f"per 40-chunk stream, and with 32 tasks it does {a_rps:,.0f} req/s against "
        f"{h_rps:,.0f}. httpx gets worse with more connections: its CPU per request goes "
        f"from {h_cpu:.0f} µs sequential to {h_ccpu:.0f} µs with 32 tasks (aiohttp: "
        f"{a_cpu:.0f} -> {a_ccpu:.0f} µs), because httpcore 1.0's pool "
        "(`_assign_requests_to_connections`, run when every request starts and ends) polls "
        "every idle socket and, per connection, counts the connections again: O(n²) in pool "
        f"size.{idle}{h2_note}"
    )
    if clean:
        verdict += (
            " Both behave well on the bad days checked above: separate connect/read timeouts, "
            "pool limits honoured, a clear exception on a cut stream, cancellation releasing "
            "the pool slot and closing the connection, no warnings."
        )
    return ["#### Choice: upstream HTTP client", "", verdict]


def client_section(res: ClientResults) -> list[str]:
    return [
        "",
        "### 2. Upstream HTTP client",
        "",
        "The upstream is the same app on uvicorn + httptools in a separate process "
        "(`/upstream/json`: reads the body, answers the 1.2 KB JSON; `/upstream/sse`: 40 "
        "chunks + [DONE], no delay); the clients run in this process on uvloop, one pooled "
        f"keep-alive client each. seq: {SEQ_N} sequential POSTs of the 1.1 KB body, whole "
        f"body read, per-request time; CPU = `time.process_time()` delta / N. c=32: "
        f"{CONC_TASKS} tasks posting back to back for {CONC_SECONDS:g} s. Then {IDLE_N} "
        "sequential again, with "
        f"the ~32 connections of the c=32 run idle in the pool. Streams: {STREAM_N} "
        "sequential, iterating lines as they come (aiohttp `resp.content`, httpx "
        f"`aiter_lines()`). Medians over {res.rounds} rounds (client order rotated); ratio = "
        "client / aiohttp. The raw asyncio client (streams + Content-Length, ~25 lines) is "
        "the floor. httpx2 is the httpx fork the installed openai SDK depends on.",
        "",
        "#### Request / response, upstream uvicorn (HTTP/1.1)",
        "",
        *_client_table(res.h1, "aiohttp"),
        "",
        "#### Streaming, upstream uvicorn",
        "",
        *_stream_table(res.h1, "aiohttp"),
        "",
        "#### HTTP/2: upstream granian (`--http auto`, h2c with prior knowledge)",
        "",
        "Cleartext HTTP/2 needs prior knowledge (`httpx.AsyncClient(http1=False, "
        "http2=True)`); with `http2=True` alone httpx only upgrades through TLS ALPN, so on "
        "an `http://` URL it speaks HTTP/1.1 (row `http2=True (h1 fallback)` above). uvicorn "
        "has no HTTP/2, granian does; aiohttp has no HTTP/2 client.",
        "",
        *_client_table(res.h2, "aiohttp"),
        "",
        *_stream_table(res.h2, "aiohttp"),
        "",
        "#### Behaviour",
        "",
        "Against the uvicorn upstream (`/slow`); each check in a fresh client; cancel: the "
        "reading task is cancelled after 3 of 40 events (20 ms apart), break: `break` out "
        "of the loop inside the response context; then one more request on the same "
        "1-connection pool. Warnings are recorded with `simplefilter('always')`.",
        "",
        *_behaviour_table(res),
        "",
        *client_choice(res),
    ]


def main() -> int:
    quick = "--quick" in sys.argv[1:]
    seconds, repeats = (1, 1) if quick else (SECONDS, REPEATS)
    if quick:
        import bench.gateway_choices_clients as clients

        clients.SEQ_N, clients.CONC_SECONDS, clients.STREAM_N, clients.IDLE_N = 300, 0.3, 40, 100
    if subprocess.run(["bash", str(ROOT / "scripts" / "ensure-wrk")]).returncode != 0:
        return 1
    global LOAD_AT_START
    LOAD_AT_START = os.getloadavg()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print("== ASGI servers", flush=True)
        servers = bench_servers(tmp, seconds, repeats)
        t1 = time.perf_counter()
        print("== upstream clients", flush=True)
        clients_res = uvloop.run(bench_clients(tmp, repeats))
    lines = header(seconds, repeats) + server_section(servers) + client_section(clients_res)
    lines.append("")
    lines.append(
        f"Whole run: {time.perf_counter() - t0:.0f} s (servers {t1 - t0:.0f} s, clients "
        f"{time.perf_counter() - t1:.0f} s); load average (1 min) at the end: "
        f"{os.getloadavg()[0]:.2f}."
    )
    text = "\n".join(lines) + "\n"
    print(text)
    if quick:
        print("(--quick: results not written)")
        return 0
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gateway_choices.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
