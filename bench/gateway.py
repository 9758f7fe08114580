"""The gateway on the request path, side by side with LiteLLM's proxy, in one run.

Run: ``python -m bench.gateway`` (about 7 minutes, 1 more the first time, to install
LiteLLM; needs ``wrk``: ``scripts/ensure-wrk``). Writes bench/results/gateway.md.
``--quick`` runs everything briefly and only prints (a smoke test, not figures);
``--no-litellm`` leaves LiteLLM out.

Every server is its own process: two mock upstreams (``hotpath mock-upstream``, one
answering at once, one after 20 ms, all tokens at once), ``hotpath serve`` with 1 and
2 workers on a memory-only cache and on serve's default tiers (memory, then SQLite,
the file in the run's temporary directory), and LiteLLM's proxy (``litellm[proxy]``
in the throwaway venv bench/.litellm-venv, offline). Measured, each against a
baseline from the same run:

1. latency at concurrency 1 on the miss path (unique prompts) and time to first
   token when streaming: direct to the mock vs through each proxy, sequential
   keep-alive requests interleaved across targets, from this process; on the default
   tiers, which requests make the tail and how often SQLite checkpointed;
2. sustained req/s with the 20 ms upstream, wrk at 64 connections, unique prompts;
3. cache-hit req/s, wrk at 64 connections, one body, vs the mock answering at once.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson

import hotpath
from bench.gateway_load import Conn, WrkRun, body, run_wrk, wrk_script
from bench.gateway_procs import (
    FAST,
    SLOW,
    Server,
    ensure_litellm,
    litellm_versions,
    start_hotpath,
    start_litellm,
    start_mock,
)
from bench.gateway_report import (
    DIRECT,
    HP1,
    HP1_DEFAULT,
    HP1_SQLITE,
    HP2,
    HP2_SQLITE,
    LATENCY_WARM,
    LITELLM_CACHE,
    Report,
    Settings,
    cpu_busy,
    pct,
)

RESULTS = Path(__file__).resolve().parent / "results"
FULL = Settings(rounds=3, latency_n=700, ttft_n=200, seconds=8, hit_seconds=5, repeats=3)
QUICK = Settings(rounds=1, latency_n=200, ttft_n=50, seconds=2, hit_seconds=2, repeats=1)
CONNS = 64


def _mock_chat_requests(mock: Server) -> int:
    with urllib.request.urlopen(f"{mock.origin}/mock/stats", timeout=10) as resp:
        n: int = orjson.loads(resp.read())["chat_requests"]
        return n


def check_answers(rep: Report, targets: dict[str, Server], fast: Server) -> None:
    """One request per target, compared with the mock's own answer to the same prompt."""
    prompt = f"check {uuid.uuid4().hex}: {'say something'}"
    direct = Conn(fast.port)
    status, _, raw, _ = direct.request(body("gpt-4o-mini", prompt))
    direct.close()
    want = orjson.loads(raw)["choices"][0]["message"]["content"]
    rep.sample = raw.decode()
    for name, server in targets.items():
        conn = Conn(server.port)
        status, headers, raw, _ = conn.request(body(FAST, prompt))
        status2, headers2, raw2, _ = conn.request(body(FAST, prompt))
        conn.close()
        if status != 200 or status2 != 200:
            rep.problems.append(f"{name}: status {status}/{status2}: {raw[:200]!r}")
            continue
        got = orjson.loads(raw)["choices"][0]["message"]["content"]
        again = orjson.loads(raw2)["choices"][0]["message"]["content"]
        if got != want or again != want:
            rep.problems.append(f"{name}: answers {got!r}, {again!r}; the mock's {want!r}")
        cache = (headers.get("x-hotpath-cache"), headers2.get("x-hotpath-cache"))
        if name.startswith("hotpath") and cache != ("miss", "hit"):
            rep.problems.append(f"{name}: x-hotpath-cache {cache}, expected miss then hit")
        tier = headers2.get("x-hotpath-cache-tier")
        if name.startswith("hotpath") and tier != "memory":
            rep.problems.append(f"{name}: the hit came from tier {tier!r}, not memory")


NO_STORE = "Cache-Control: no-store\r\n"
Row = tuple[str, int, str]  # name, port, extra request headers


Samples = dict[str, list[list[int]]]  # row -> per round, ns of each request in order


def _sequential(rows: list[Row], st: Settings, n: int, warm: int, *, stream: bool) -> Samples:
    """Per row, the ns of each request of each round: one connection per row, requests
    one at a time, interleaved request by request (rotating who goes first); the first
    row is the direct baseline. Every prompt is new."""
    tag = uuid.uuid4().hex[:8]
    conns = [Conn(port) for _, port, _ in rows]
    out: Samples = {name: [] for name, _, _ in rows}
    try:
        for r in range(st.rounds + 1):  # round 0 is the warm-up
            samples: list[list[int]] = [[] for _ in rows]
            for i in range(n if r else warm):
                for j in range(len(rows)):
                    k = (i + j) % len(rows)
                    model = "gpt-4o-mini" if k == 0 else FAST
                    payload = body(model, f"{tag} r{r} {k} #{i}: c=1", stream=stream)
                    if stream:
                        ns, _ = conns[k].stream_ttft(payload, rows[k][2])
                    else:
                        status, _, raw, ns = conns[k].request(payload, rows[k][2])
                        if status != 200:
                            raise RuntimeError(f"{rows[k][0]}: status {status}: {raw[:200]!r}")
                    samples[k].append(ns)
            if r:
                for (name, _, _), ns_list in zip(rows, samples, strict=True):
                    out[name].append(ns_list)
    finally:
        for c in conns:
            c.close()
    return out


def _figures(samples: Samples) -> dict[str, list[tuple[float, float]]]:
    return {name: [pct(ns) for ns in rounds] for name, rounds in samples.items()}


def wal_checkpoints(db: Path) -> int:
    """The checkpoint sequence number in the header of *db*'s write-ahead log: SQLite
    adds one each time a writer starts the log over after a complete checkpoint."""
    try:
        with (db.parent / f"{db.name}-wal").open("rb") as f:
            head = f.read(16)
    except OSError:
        return 0
    return int.from_bytes(head[12:16], "big") if len(head) == 16 else 0


def sqlite_rows(db: Path) -> int:
    """Rows in the cache's SQLite file (read-only; WAL lets the server go on)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        n: int = conn.execute("SELECT count(*) FROM entries").fetchone()[0]
        return n
    finally:
        conn.close()


def latency_c1(rep: Report, st: Settings, fast: Server, targets: dict[str, Server]) -> None:
    """Each proxy in its own block, interleaved with its own direct baseline: LiteLLM
    keeps working after it answers (logging threads), which would slow the requests
    that follow it if all were interleaved together."""
    for name, server in targets.items():
        rows: list[Row] = [(DIRECT, fast.port, ""), (name, server.port, "")]
        if name == HP1:
            rows.append((f"{name}, `Cache-Control: no-store`", server.port, NO_STORE))
        ckpt = wal_checkpoints(server.sqlite) if server.sqlite else 0
        samples = _sequential(rows, st, st.latency_n, LATENCY_WARM, stream=False)
        if server.sqlite:
            rep.checkpoints[name] = wal_checkpoints(server.sqlite) - ckpt
        rep.latency.append(_figures(samples))
        if name.startswith("hotpath"):
            rep.samples[name] = (samples[name], samples[DIRECT])
        rep.ttft.append(_figures(_sequential(rows[:2], st, st.ttft_n, 30, stream=True)))


def wrk_rounds(
    rep: Report,
    table: dict[str, list[WrkRun]],
    st: Settings,
    tmp: Path,
    targets: dict[str, tuple[Server, str]],
    *,
    unique: bool,
    seconds: float,
    upstream: Server | None = None,
) -> None:
    """Warm each target, then ``st.repeats`` rounds of wrk runs in rotating order.

    With *upstream*, count the chat requests it received during each timed run."""
    names = list(targets)
    scripts = {}
    for i, (name, (server, model)) in enumerate(targets.items()):
        tag = f"{'miss' if unique else 'hit'}{i}"
        warm = wrk_script(tmp, f"{tag}-warm", model, unique=uuid.uuid4().hex if unique else None)
        run_wrk(server.port, warm, CONNS, 2)
        scripts[name] = [
            wrk_script(tmp, f"{tag}-{r}", model, unique=uuid.uuid4().hex if unique else None)
            for r in range(st.repeats)
        ]
    for r in range(st.repeats):
        for j in range(len(names)):
            name = names[(r + j) % len(names)]
            server, _ = targets[name]
            before = _mock_chat_requests(upstream) if upstream else 0
            cpu = server.cpu_seconds()
            res = run_wrk(server.port, scripts[name][r], CONNS, seconds)
            cpu = server.cpu_seconds() - cpu
            table.setdefault(name, []).append(res)
            kind = "miss" if unique else "hit"
            rep.cpu_ms.setdefault(f"{kind}:{name}", []).append(1000 * cpu / max(1, res.requests))
            if upstream:
                calls = _mock_chat_requests(upstream) - before
                rep.upstream_calls[name] = rep.upstream_calls.get(name, 0) + calls
            if res.errors or res.non2xx:
                rep.problems.append(
                    f"{name}: wrk saw {res.errors} errors, {res.non2xx} non-2xx of {res.requests}"
                )


@contextlib.contextmanager
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        yield started
    finally:
        for s in reversed(started):
            s.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs; print, don't write")
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM out")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="first wait up to this long for the CPUs to be under 15%% busy (default 60)",
    )
    args = parser.parse_args(argv)
    st = QUICK if args.quick else FULL
    rep = Report(settings=st, conns=CONNS, source=hotpath_source())
    busy = cpu_busy()
    deadline = time.monotonic() + args.wait_quiet
    while busy > 0.15 and time.monotonic() < deadline:
        print(f"the CPUs are {busy:.0%} busy: waiting for a quieter moment", flush=True)
        time.sleep(3)
        busy = cpu_busy(2)
    if busy > 0.15:
        print(f"warning: the CPUs are {busy:.0%} busy before we start", file=sys.stderr)
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hotpath-bench-") as d, servers() as up:
        tmp = Path(d)
        rep.tmp_fs = _filesystem(tmp)
        exe = None
        if args.no_litellm:
            rep.litellm_note = "left out (`--no-litellm`)"
        else:
            print("LiteLLM venv ...", flush=True)
            exe, rep.litellm_note = ensure_litellm(tmp / "pip.log")
            if exe is not None:
                rep.litellm_versions = litellm_versions()
            else:
                print(f"LiteLLM NOT AVAILABLE: {rep.litellm_note}", file=sys.stderr, flush=True)
        fast, slow = start_mock(tmp, 0), start_mock(tmp, 20)
        up += [fast, slow]
        hp1 = start_hotpath(tmp, 1, fast, slow)
        up.append(hp1)
        hp1s = start_hotpath(tmp, 1, fast, slow, default_tiers=True)
        up.append(hp1s)
        ll1 = _try_litellm(rep, exe, tmp, 1, fast, slow, cache=False)
        if ll1:
            up.append(ll1)
        c1 = {HP1: hp1, HP1_DEFAULT: hp1s} | ({"LiteLLM, 1 worker": ll1} if ll1 else {})
        check_answers(rep, c1, fast)
        print(
            f"{time.monotonic() - t_start:.0f} s: 1. latency at concurrency 1, time to first token",
            flush=True,
        )
        latency_c1(rep, st, fast, c1)
        hp2 = start_hotpath(tmp, 2, fast, slow)
        up.append(hp2)
        hp2s = start_hotpath(tmp, 2, fast, slow, default_tiers=True)
        up.append(hp2s)
        check_answers(rep, {HP2: hp2, HP2_SQLITE: hp2s}, fast)
        ll2 = _try_litellm(rep, exe, tmp, 2, fast, slow, cache=False)
        sustained = {DIRECT: (slow, SLOW), HP1: (hp1, SLOW), HP1_SQLITE: (hp1s, SLOW)}
        sustained |= {HP2: (hp2, SLOW), HP2_SQLITE: (hp2s, SLOW)}
        if ll1:
            sustained["LiteLLM, 1 worker"] = (ll1, SLOW)
        if ll2:
            up.append(ll2)
            sustained["LiteLLM, 2 workers (`--num_workers 2`)"] = (ll2, SLOW)
        print(f"{time.monotonic() - t_start:.0f} s: 2. sustained req/s, 20 ms upstream", flush=True)
        wrk_rounds(rep, rep.sustained, st, tmp, sustained, unique=True, seconds=st.seconds)
        for s in (ll2, ll1):
            if s:
                s.stop()
        llc = _try_litellm(rep, exe, tmp, 1, fast, slow, cache=True)
        hits = {"the mock answering at once": (fast, FAST), HP1: (hp1, FAST)}
        hits |= {HP1_SQLITE: (hp1s, FAST), HP2: (hp2, FAST)}
        if llc:
            up.append(llc)
            hits[LITELLM_CACHE] = (llc, FAST)
        print(f"{time.monotonic() - t_start:.0f} s: 3. cache-hit req/s", flush=True)
        wrk_rounds(
            rep, rep.hits, st, tmp, hits, unique=False, seconds=st.hit_seconds, upstream=fast
        )
        for name, server in ((HP1_SQLITE, hp1s), (HP2_SQLITE, hp2s)):
            if server.sqlite:
                rep.sqlite_rows[name] = sqlite_rows(server.sqlite)
    rep.elapsed = time.monotonic() - t_start
    rep.busy = (busy, cpu_busy())
    text = "\n".join(rep.render()) + "\n"
    print(text)
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "gateway.md").write_text(text)
    return 0


def _git(cwd: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def hotpath_source() -> str:
    """Which hotpath the servers will run (they import it as this process would): the
    git commit of its package directory and whether that directory has local changes."""
    src = Path(hotpath.__file__).resolve().parent
    head = _git(src, "rev-parse", "--short", "HEAD")
    if head is None:
        return f"`{src}` (not in a git checkout)"
    changed = (_git(src, "status", "--porcelain", "--", ".") or "").splitlines()
    state = f"{len(changed)} files with uncommitted changes" if changed else "as committed"
    return f"git {head}, `{src.parent.name}/{src.name}` {state}"


def _filesystem(path: Path) -> str:
    """``ext4 (/dev/vda)``: the type and source of the filesystem holding *path*."""
    try:
        out = subprocess.run(
            ["df", "--output=fstype,source", str(path)], capture_output=True, text=True
        )
    except OSError:
        return "?"
    lines = out.stdout.split("\n")
    parts = lines[1].split() if out.returncode == 0 and len(lines) > 1 else []
    return f"{parts[0]} ({parts[1]})" if len(parts) == 2 else "?"


def _try_litellm(
    rep: Report,
    exe: Path | None,
    tmp: Path,
    workers: int,
    fast: Server,
    slow: Server,
    *,
    cache: bool,
) -> Server | None:
    if exe is None:
        return None
    try:
        server = start_litellm(exe, tmp, workers, fast, slow, cache=cache)
    except RuntimeError as exc:
        what = f"LiteLLM with {workers} worker(s){' and its cache' if cache else ''}"
        rep.problems.append(f"{what} did not start: {str(exc).splitlines()[0]}")
        print(f"{what} did not start:\n{exc}", file=sys.stderr, flush=True)
        return None
    # A few requests so every worker has loaded its router before anything is timed.
    conns = [Conn(server.port) for _ in range(8)]
    for i in range(5):
        for j, conn in enumerate(conns):
            conn.request(body(FAST, f"warm {j} {i}"))
    for conn in conns:
        conn.close()
    return server


if __name__ == "__main__":
    sys.exit(main())
