"""Figures and the markdown report of ``bench.gateway``."""

from __future__ import annotations

import statistics
import subprocess
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from bench.gateway_load import WrkRun
from bench.timing import machine

__all__ = ["LITELLM_CACHE", "Report", "Settings", "cpu_busy", "pct"]

PACKAGES = ("hotpath", "uvicorn", "uvloop", "httptools", "aiohttp", "orjson")
MAX_ADDED_P99_MS = 1.5
LITELLM_CACHE = "LiteLLM, 1 worker, `cache: true` (local)"
Figures = dict[str, list[tuple[float, float]]]
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
                    proxy = list(group)[1].split(",")[0] if len(group) > 1 else "-"
                    lines.append(
                        f"| {name}, in the {proxy} block (baseline) | {p50:.3f} / {p99:.3f} "
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

    def targets(self) -> list[str]:
        out = []
        hp, ll = "hotpath, 1 worker", "LiteLLM, 1 worker"
        block = next((g for g in self.latency if hp in g), None)
        if block is not None:
            a50, a99 = self.added(block, hp)
            ok = "met" if a99 <= MAX_ADDED_P99_MS else "**not met**"
            out.append(
                f"- Added p99 at concurrency 1 (miss path, 1 worker) <= {MAX_ADDED_P99_MS} ms: "
                f"{ok} ({a99:+.3f} ms; p50 {a50:+.3f} ms)."
            )
        h1, l1 = self._rps(self.sustained, hp), self._rps(self.sustained, ll)
        if h1 and l1:
            ok = "met" if h1 / l1 >= MIN_VS_LITELLM else "**not met**"
            line = (
                f"- Sustained req/s with a 20 ms upstream >= {MIN_VS_LITELLM:g}x LiteLLM's "
                f"(1 worker each): {ok} ({h1:,.0f} vs {l1:,.0f} req/s, {h1 / l1:.1f}x)"
            )
            h2 = self._rps(self.sustained, "hotpath, 2 workers")
            l2 = self._rps(self.sustained, "LiteLLM, 2 workers (`--num_workers 2`)")
            if h2 and l2:
                line += f"; 2 workers each: {h2:,.0f} vs {l2:,.0f} req/s, {h2 / l2:.1f}x"
            out.append(line + ".")
        elif h1:
            out.append("- Sustained req/s >= 3x LiteLLM's: **not measured** (no LiteLLM).")
        best = max(
            ((self._rps(self.hits, n) or 0.0, n) for n in self.hits if n.startswith("hotpath")),
            default=(0.0, ""),
        )
        if best[1]:
            ok = "met" if best[0] >= MIN_HIT_RPS else "**not met**"
            out.append(
                f"- >= {MIN_HIT_RPS:,.0f} cache-hit req/s: {ok} ({best[0]:,.0f} req/s, {best[1]})."
            )
        return out

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
            f"hotpath side: {_versions()}.",
            f"LiteLLM side: {self.litellm_versions}; {self.litellm_note}.",
            "",
            "Produced by `python -m bench.gateway`. Every server is its own process: two "
            "`hotpath mock-upstream` processes (one answering at once, one after 20 ms; all "
            "tokens at once; 1 worker each), `hotpath serve` (memory-only cache) and "
            "LiteLLM's proxy (offline, `LITELLM_LOCAL_MODEL_COST_MAP=True`, master key, "
            "`LITELLM_LOG=ERROR`). Both proxies route the same model names to the same mocks. "
            "The load generator and the servers share the 2 cores; nothing is pinned.",
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
            "calls the mock and writes its cache; the `no-store` row bypasses the cache. "
            "LiteLLM's cache is off. p50 / p99: median over rounds. **Added = the path's "
            "percentile minus the direct percentile of the same round** (a difference of "
            "percentiles, not a percentile of differences), median over rounds; the last "
            "column shows each round's added p99.",
            "",
            *self._latency_table(self.latency),
            "",
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
            "programs load the machine.",
            "",
            *self._wrk_table(self.sustained, "LiteLLM, 1 worker"),
            "",
            "## 3. Cache-hit req/s",
            "",
            f"wrk, 1 thread, {self.conns} connections, the same body every time; a 2 s warm-up "
            f"fills the cache, then {st.repeats} runs of {st.hit_seconds:g} s in rotating "
            "order; median. Baseline: the mock answering at once (no cache: it builds the "
            "answer each time). The last column counts requests that reached the mock during "
            "the timed runs (0 = every request was a hit).",
            "",
            *self._wrk_table(self.hits, LITELLM_CACHE),
            "",
            "Sample answer (direct from the mock; every path was checked to give the same "
            "content for the same prompt, and hotpath to answer miss then hit):",
            "",
            f"```json\n{self.sample}\n```",
        ]
        return lines
