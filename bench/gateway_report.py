"""Figures and the markdown report of ``bench.gateway``."""

from __future__ import annotations

import itertools
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from bench.gateway_load import WrkRun
from bench.timing import machine

__all__ = [
    "DIRECT",
    "HP1",
    "HP1_DEFAULT",
    "HP1_SQLITE",
    "HP2",
    "HP2_SQLITE",
    "LITELLM_CACHE",
    "Report",
    "Settings",
    "cpu_busy",
    "pct",
]

PACKAGES = ("hotpath", "uvicorn", "uvloop", "httptools", "aiohttp", "orjson")
MAX_ADDED_P99_MS = 1.5
LATENCY_WARM = 200  # warm-up requests per path before the latency rounds
LITELLM_CACHE = "LiteLLM, 1 worker, `cache: true` (local)"
DIRECT = "direct to the mock"
#: hotpath's rows: a memory-only cache, or serve's default tiers (memory, then SQLite).
HP1, HP2 = "hotpath, 1 worker, memory only", "hotpath, 2 workers, memory only"
HP1_SQLITE, HP2_SQLITE = "hotpath, 1 worker, memory + SQLite", "hotpath, 2 workers, memory + SQLite"
HP1_DEFAULT = f"{HP1_SQLITE} (the default)"
LL1, LL2 = "LiteLLM, 1 worker", "LiteLLM, 2 workers (`--num_workers 2`)"
Figures = dict[str, list[tuple[float, float]]]
Rounds = list[list[int]]  # per round, ns of each request in the order sent
MIN_VS_LITELLM = 3.0
MIN_HIT_RPS = 5000.0


@dataclass(frozen=True)
class Settings:
    rounds: int  # latency rounds (after one warm-up round)
    latency_n: int  # requests per target per round
    ttft_n: int  # streams per target per round
    seconds: float  # wrk run, sustained
    hit_seconds: float  # wrk run, cache hits
    repeats: int  # wrk runs per target


def pct(ns: list[int]) -> tuple[float, float]:
    """(p50, p99) in ms."""
    s = sorted(ns)
    return s[len(s) // 2] / 1e6, s[min(len(s) - 1, round(0.99 * (len(s) - 1)))] / 1e6


def _sh(*argv: str) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError:
        return "?"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "?"


def _versions() -> str:
    out = []
    for p in PACKAGES:
        try:
            out.append(f"{p} {version(p)}")
        except PackageNotFoundError:
            out.append(f"{p} absent")
    return ", ".join(out)


def cpu_busy(seconds: float = 1.0) -> float:
    """Fraction of all CPUs busy over *seconds* (from /proc/stat; 0.0 if unreadable)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def _med(xs: list[float]) -> float:
    return statistics.median(xs)


@dataclass
class Report:
    settings: Settings
    conns: int
    litellm_note: str = ""
    litellm_versions: str = "not installed"
    sample: str = ""
    elapsed: float = 0.0
    busy: tuple[float, float] = (0.0, 0.0)  # CPU busy before we start, after we stop
    problems: list[str] = field(default_factory=list)
    # per proxy block: row -> per round (p50 ms, p99 ms); the first row is the baseline
    latency: list[Figures] = field(default_factory=list)
    ttft: list[Figures] = field(default_factory=list)
    sustained: dict[str, list[WrkRun]] = field(default_factory=dict)
    hits: dict[str, list[WrkRun]] = field(default_factory=dict)
    upstream_calls: dict[str, int] = field(default_factory=dict)
    cpu_ms: dict[str, list[float]] = field(default_factory=dict)  # "miss:name" -> per run
    # hotpath latency rows (not streaming): name -> (its requests, its block's direct ones)
    samples: dict[str, tuple[Rounds, Rounds]] = field(default_factory=dict)
    # default tiers: times the SQLite WAL was started over during the latency block
    checkpoints: dict[str, int] = field(default_factory=dict)
    sqlite_rows: dict[str, int] = field(default_factory=dict)  # rows in the file at the end
    tmp_fs: str = "?"  # the filesystem the SQLite files are on
    source: str = "?"  # which hotpath code the servers ran (git commit, local changes)

    def added(self, group: Figures, name: str) -> tuple[float, float]:
        """Median over rounds of (p50 - baseline p50, p99 - baseline p99), in ms."""
        base = next(iter(group.values()))
        rows = group[name]
        return (
            _med([r[0] - b[0] for r, b in zip(rows, base, strict=True)]),
            _med([r[1] - b[1] for r, b in zip(rows, base, strict=True)]),
        )

    def _latency_table(self, groups: list[Figures]) -> list[str]:
        lines = [
            "| path | p50 / p99 (ms) | p50 ratio | added p50 / p99 (ms) | added p99, rounds |",
            "| --- | --- | --- | --- | --- |",
        ]
        for group in groups:
            base = next(iter(group.values()))
            b50 = _med([r[0] for r in base])
            for i, (name, rows) in enumerate(group.items()):
                p50, p99 = _med([r[0] for r in rows]), _med([r[1] for r in rows])
                if i == 0:
                    proxy = list(group)[1] if len(group) > 1 else "-"
                    lines.append(
                        f"| {name}, baseline of the block *{proxy}* | {p50:.3f} / {p99:.3f} "
                        "| 1.00 | | |"
                    )
                    continue
                a50, a99 = self.added(group, name)
                spread = ", ".join(f"{r[1] - b[1]:+.2f}" for r, b in zip(rows, base, strict=True))
                lines.append(
                    f"| {name} | {p50:.3f} / {p99:.3f} | {p50 / b50:.2f} "
                    f"| **{a50:+.3f} / {a99:+.3f}** | {spread} |"
                )
        return lines

    def _wrk_table(self, runs: dict[str, list[WrkRun]], vs: str | None) -> list[str]:
        names = list(runs)
        base = _med([w.rps for w in runs[names[0]]])
        other = _med([w.rps for w in runs[vs]]) if vs and vs in runs else None
        head = "| target | req/s (median) | runs | ratio to baseline |"
        head += f" x {vs} |" if other else ""
        head += " wrk p50 / p99 (ms) | server CPU ms / req | errors, non-2xx |"
        if self.upstream_calls and runs is self.hits:
            head += " upstream calls in timed runs |"
        lines = [head, "| --- " * (head.count("|") - 1) + "|"]
        for name, ws in runs.items():
            rps = _med([w.rps for w in ws])
            cells = [
                name + (" (baseline)" if name == names[0] else ""),
                f"**{rps:,.0f}**",
                ", ".join(f"{w.rps:,.0f}" for w in ws),
                f"{rps / base:.2f}",
            ]
            if other:
                cells.append("-" if name == names[0] else f"{rps / other:.2f}")
            cells.append(f"{_med([w.p50_ms for w in ws]):.1f} / {_med([w.p99_ms for w in ws]):.1f}")
            kind = "hit" if runs is self.hits else "miss"
            cpu = self.cpu_ms.get(f"{kind}:{name}")
            cells.append(f"{_med(cpu):.3f}" if cpu else "-")
            cells.append(f"{sum(w.errors for w in ws)}, {sum(w.non2xx for w in ws)}")
            if self.upstream_calls and runs is self.hits:
                calls = self.upstream_calls.get(name, 0)
                total = sum(w.requests for w in ws)
                cells.append("-" if name == names[0] else f"{calls:,} of {total:,}")
            lines.append("| " + " | ".join(cells) + " |")
        return lines

    def _rps(self, runs: dict[str, list[WrkRun]], name: str) -> float | None:
        return _med([w.rps for w in runs[name]]) if name in runs else None

    def _added_p99_line(self, name: str, what: str) -> str | None:
        block = next((g for g in self.latency if name in g), None)
        if block is None:
            return None
        a50, a99 = self.added(block, name)
        ok = "met" if a99 <= MAX_ADDED_P99_MS else "**not met**"
        return (
            f"- Added p99 at concurrency 1 (miss path, 1 worker, {what}) <= "
            f"{MAX_ADDED_P99_MS} ms: {ok} ({a99:+.3f} ms; p50 {a50:+.3f} ms)."
        )

    def targets(self) -> list[str]:
        out = [
            line
            for line in (
                self._added_p99_line(HP1, "memory-only cache"),
                self._added_p99_line(HP1_DEFAULT, "the default tiers, memory + SQLite"),
            )
            if line
        ]
        h1, l1 = self._rps(self.sustained, HP1), self._rps(self.sustained, LL1)
        if h1 and l1:
            ok = "met" if h1 / l1 >= MIN_VS_LITELLM else "**not met**"
            line = (
                f"- Sustained req/s with a 20 ms upstream >= {MIN_VS_LITELLM:g}x LiteLLM's "
                f"(1 worker each; hotpath memory-only, LiteLLM's cache off): {ok} "
                f"({h1:,.0f} vs {l1:,.0f} req/s, {h1 / l1:.1f}x)"
            )
            h2, l2 = self._rps(self.sustained, HP2), self._rps(self.sustained, LL2)
            if h2 and l2:
                line += f"; 2 workers each: {h2:,.0f} vs {l2:,.0f} req/s, {h2 / l2:.1f}x"
            out.append(line + ".")
            s1, s2 = self._rps(self.sustained, HP1_SQLITE), self._rps(self.sustained, HP2_SQLITE)
            if s1:
                ok = "met" if s1 / l1 >= MIN_VS_LITELLM else "**not met**"
                line = (
                    f"- The same on hotpath's default tiers (memory + SQLite): {ok} "
                    f"({s1:,.0f} vs {l1:,.0f} req/s, {s1 / l1:.1f}x)"
                )
                if s2 and l2:
                    line += f"; 2 workers each: {s2:,.0f} vs {l2:,.0f} req/s, {s2 / l2:.1f}x"
                out.append(line + ".")
        elif h1:
            out.append("- Sustained req/s >= 3x LiteLLM's: **not measured** (no LiteLLM).")
        for label, names in (
            ("memory-only", [n for n in self.hits if n in (HP1, HP2)]),
            ("memory + SQLite, the default", [n for n in self.hits if n == HP1_SQLITE]),
        ):
            best = max(((self._rps(self.hits, n) or 0.0, n) for n in names), default=(0.0, ""))
            if best[1]:
                ok = "met" if best[0] >= MIN_HIT_RPS else "**not met**"
                out.append(
                    f"- >= {MIN_HIT_RPS:,.0f} cache-hit req/s ({label}): {ok} "
                    f"({best[0]:,.0f} req/s, {best[1]})."
                )
        return out

    def tail(self, name: str) -> tuple[list[int], list[float], int]:
        """The requests of *name* that took more than MAX_ADDED_P99_MS longer than the
        direct p50 of their round: their numbers in the timed sequence (from 1) and
        how much longer (ms), and the number of requests."""
        rows, base = self.samples[name]
        where: list[int] = []
        excess: list[float] = []
        n = 0
        for ns, direct in zip(rows, base, strict=True):
            ref = pct(direct)[0]
            for i, x in enumerate(ns):
                if x / 1e6 - ref > MAX_ADDED_P99_MS:
                    where.append(n + i + 1)
                    excess.append(x / 1e6 - ref)
            n += len(ns)
        return where, excess, n

    def _tail_lines(self) -> list[str]:
        if HP1_DEFAULT not in self.samples:
            return []
        lim = MAX_ADDED_P99_MS
        lines = [
            "### The tail on the default tiers",
            "",
            f"Requests that took more than {lim} ms longer than the direct p50 of their "
            "round (the same rounds as the table above):",
            "",
            "| path | requests over +1.5 ms | over +3 / +5 / +10 ms | worst (ms) |",
            "| --- | --- | --- | --- |",
        ]
        for name in (HP1, HP1_DEFAULT):
            if name not in self.samples:
                continue
            where, excess, n = self.tail(name)
            over = " / ".join(str(sum(e > t for e in excess)) for t in (3, 5, 10))
            worst = f"+{max(excess):.2f}" if excess else "-"
            lines.append(f"| {name} | {len(where)} of {n:,} | {over} | {worst} |")
        where, excess, n = self.tail(HP1_DEFAULT)
        lines.append("")
        if where:
            gaps = [b - a for a, b in itertools.pairwise(where)]
            shown = ", ".join(str(w) for w in where[:60]) + (", ..." if len(where) > 60 else "")
            text = f"On the default tiers they are requests {shown} of the {n:,}"
            if gaps:
                q = statistics.quantiles(gaps, n=4) if len(gaps) > 1 else [gaps[0]] * 3
                text += (
                    f"; gaps between them (in requests): median {statistics.median(gaps):g}, "
                    f"quartiles {q[0]:g} / {q[2]:g}, min {min(gaps)}, max {max(gaps)}"
                )
            lines.append(text + ".")
        ckpt = self.checkpoints.get(HP1_DEFAULT)
        if ckpt is not None:
            writes = LATENCY_WARM + n
            each = f": once per {writes / ckpt:,.0f} writes" if ckpt else ""
            lines.append(
                f"SQLite started its write-ahead log over {ckpt} times during the block's "
                f"{writes:,} writes ({LATENCY_WARM} warm-up and {n:,} timed misses, one row "
                f"each){each}. The SQLite tier checkpoints on a thread of its own every "
                "64 writes (SQLite's automatic checkpoint, run inside the write that "
                "crosses 1,000 pages, fsyncs included, is raised to a 10,000-page "
                "backstop); a write restarts the log when it finds it fully checkpointed."
            )
        return [*lines, ""]

    def _rows_lines(self) -> list[str]:
        out = []
        for name, rows in self.sqlite_rows.items():
            timed = sum(w.requests for w in self.sustained.get(name, []))
            out.append(
                f"{name}: its SQLite file held {rows:,} rows at the end of the run, after "
                f"{timed:,} misses in the timed runs above (and the warm-ups and checks)."
            )
        return [" ".join(out), ""] if out else []

    def render(self) -> list[str]:
        st = self.settings
        lines = [
            "# Gateway: added latency and throughput, side by side with LiteLLM's proxy",
            "",
            f"Machine: {machine()}; `nproc` = {_sh('nproc')}. Date: {_sh('date', '-u')}. "
            f"{_sh('wrk', '-v')}. Whole run: {self.elapsed:.0f} s.",
            "",
            f"Other load on the machine (CPU busy over 1 s with none of our processes "
            f"running): {self.busy[0]:.0%} before the run, {self.busy[1]:.0%} after it.",
            "",
            f"hotpath side: {_versions()}; source: {self.source}.",
            f"LiteLLM side: {self.litellm_versions}; {self.litellm_note}.",
            "",
            "Produced by `python -m bench.gateway`. Every server is its own process: two "
            "`hotpath mock-upstream` processes (one answering at once, one after 20 ms; all "
            "tokens at once; 1 worker each), `hotpath serve` in two configurations and "
            "LiteLLM's proxy (offline, `LITELLM_LOCAL_MODEL_COST_MAP=True`, master key, "
            "`LITELLM_LOG=ERROR`). Both proxies route the same model names to the same mocks. "
            "The load generator and the servers share the 2 cores; nothing is pinned.",
            "",
            "hotpath's two cache configurations: *memory only* (`[cache] tiers = "
            '["memory://"]`) and *memory + SQLite*, `hotpath serve`\'s default (no `[cache]` '
            "section: `memory://?max_entries=50000`, then `sqlite:///.hotpath/cache.db` "
            "under the server's working directory, a fresh directory in the run's temporary "
            f"directory, on {self.tmp_fs}). On the default tiers every miss also writes a row "
            "to SQLite (WAL, `synchronous=NORMAL`); a hit is served from memory.",
            "",
            "## Targets",
            "",
            *self.targets(),
            "",
        ]
        if self.problems:
            lines += ["**Problems seen:**", "", *[f"- {p}" for p in self.problems], ""]
        lines += [
            "## 1. Latency at concurrency 1, miss path",
            "",
            "One keep-alive connection per path, requests sent one at a time from one Python "
            "client (raw sockets, TCP_NODELAY); mock answering at once. Each proxy is "
            "measured in its own block, interleaved request by request (rotating who goes "
            "first) with direct requests to the mock, the baseline of that block: LiteLLM "
            "keeps working after it has answered (logging threads), which slowed whatever "
            "request came next when all paths were interleaved together. Per block a "
            f"warm-up round of 200, then {st.rounds} rounds of {st.latency_n:,} per path "
            f"({st.rounds * st.latency_n:,} in all). Every prompt is new, so hotpath misses, "
            "calls the mock and writes its cache (memory + SQLite: a SQLite row too); the "
            "`no-store` row bypasses the cache. "
            "LiteLLM's cache is off. p50 / p99: median over rounds. **Added = the path's "
            "percentile minus the direct percentile of the same round** (a difference of "
            "percentiles, not a percentile of differences), median over rounds; the last "
            "column shows each round's added p99.",
            "",
            *self._latency_table(self.latency),
            "",
            *self._tail_lines(),
            "### Time to first token, streaming",
            "",
            f'`"stream": true`, the same blocks and interleaving; {st.rounds} rounds of '
            f"{st.ttft_n} streams per path after 30 warm-up. Time from sending the request "
            "to the first `data:` line whose delta carries content.",
            "",
            *self._latency_table(self.ttft),
            "",
            "## 2. Sustained req/s, 20 ms upstream",
            "",
            f"wrk, 1 thread, {self.conns} connections, {st.seconds:g} s runs after a 2 s "
            f"warm-up, {st.repeats} repeats in rotating order; median. Every prompt is new "
            "(a per-request counter in the Lua script): all misses. At 64 connections a "
            "20 ms upstream allows at most 3,200 req/s, more than one Python process serves "
            "on these cores, so the figure is each proxy's CPU cost per request rather than "
            "the upstream's wait; the direct row shows how close to that ceiling the mock "
            "itself gets with wrk on the same cores. Server CPU ms / req: user + system CPU "
            "of the server's processes (workers included) during the timed runs, divided by "
            "the requests answered (median of runs); it shifts less than req/s when other "
            "programs load the machine. On memory + SQLite every request also writes a "
            "SQLite row; the 2 workers share one file and take turns on its write lock.",
            "",
            *self._wrk_table(self.sustained, LL1),
            "",
            *self._rows_lines(),
            "## 3. Cache-hit req/s",
            "",
            f"wrk, 1 thread, {self.conns} connections, the same body every time; a 2 s warm-up "
            f"fills the cache, then {st.repeats} runs of {st.hit_seconds:g} s in rotating "
            "order; median. Baseline: the mock answering at once (no cache: it builds the "
            "answer each time). The last column counts requests that reached the mock during "
            "the timed runs (0 = every request was a hit). On memory + SQLite a hit is "
            "served from the memory tier (`x-hotpath-cache-tier: memory`, checked), so it "
            "should cost what it does on memory only.",
            "",
            *self._wrk_table(self.hits, LITELLM_CACHE),
            "",
            "Sample answer (direct from the mock; every path was checked to give the same "
            "content for the same prompt, and hotpath to answer miss then hit):",
            "",
            f"```json\n{self.sample}\n```",
        ]
        return lines
