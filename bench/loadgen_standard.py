"""``hotpath bench``'s standard scenario: the mock direct vs through the gateway
and through LiteLLM's proxy, open and closed loop, and the
generator's own ceiling.

Run: ``python -m bench.loadgen_standard`` (about 3 minutes). Writes
bench/results/loadgen.md; ``--quick`` runs briefly and only prints.

Servers are processes (bench.gateway_procs): a mock answering after 20 ms and
one answering at once, ``hotpath serve`` with 1 worker on a memory-only cache,
and LiteLLM's proxy with 1 worker and its local cache, from bench/.litellm-venv
(created with ``pip install 'litellm[proxy]'`` when missing, as
``bench.gateway`` does; LiteLLM is left out, and the report says why, when that
fails). The generator (hotpath.loadgen, aiohttp on
uvloop) runs in this process and measures each target in turn with the same
seeded requests:

1. open loop at 100 and 400 req/s (Poisson arrivals) and closed loop at 32, zipf
   workload (1,000 prompts, s=1.1, 30% streamed), against the 20 ms mock;
2. the generator's ceiling: open loop at rising rates and closed loop at 64
   against the mock answering at once, with this process's CPU per request.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.gateway_procs import (
    MASTER_KEY,
    SLOW,
    Server,
    ensure_litellm,
    start_hotpath,
    start_litellm,
    start_mock,
)
from bench.gateway_report import cpu_busy
from bench.timing import machine
from hotpath.loadgen import LoadConfig, Target, TargetResult, WorkloadConfig, run_bench
from hotpath.loadgen._markdown import ms

RESULTS = Path(__file__).resolve().parent / "results"
DIRECT, HOTPATH, LITELLM = "mock direct", "hotpath, 1 worker (memory)", "LiteLLM, 1 worker"


@dataclass(frozen=True, slots=True)
class Settings:
    seconds: float
    warmup: float
    rates: tuple[float, ...]
    ceiling_rates: tuple[float, ...]
    ceiling_seconds: float


FULL = Settings(8, 2, (100, 400), (500, 1000, 2000, 3000, 4000), 5)
QUICK = Settings(2, 0.5, (100, 400), (1000, 3000), 2)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _scenario_table(results: list[TargetResult]) -> list[str]:
    base = results[0]
    lines = [
        "| target | answers/s | p50 | p90 | p99 | p99.9 | max | TTFT p50 / p99 | send lag p99 "
        "| hit rate | errors | p50 vs direct | p99 vs direct |",
        "|---" + "|---:" * 12 + "|",
    ]
    for r in results:
        ttft = f"{ms(r.ttft.p50)} / {ms(r.ttft.p99)}" if r.ttft else "-"
        hit = "-" if r.hit_rate is None else f"{r.hit_rate:.0%}"
        errors = sum(r.errors.values())
        err = f"{errors:,}" + (f" ({', '.join(r.errors)})" if errors else "")
        lat, base_lat = r.latency, base.latency
        timing = (
            [ms(lat.p50), ms(lat.p90), ms(lat.p99), ms(lat.p999), ms(lat.max)] if lat else ["-"] * 5
        )
        if r is base:
            ratios = ["baseline", "baseline"]
        elif lat is None or base_lat is None:
            ratios = ["-", "-"]  # a target that answered nothing
        else:
            ratios = [f"{lat.p50 / base_lat.p50:.2f}x", f"{lat.p99 / base_lat.p99:.2f}x"]
        cells = [
            r.name,
            f"{r.throughput:,.0f}",
            *timing,
            ttft,
            ms(r.lag.p99) if r.lag else "-",
            hit,
            err,
            *ratios,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _ceiling(st: Settings, fast: Server) -> list[str]:
    lines = [
        "| load | offered req/s | answers/s | p50 | p99 | send lag p99 | generator CPU µs / req "
        "| kept up |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    target = Target(name="mock, at once", url=f"{fast.origin}/v1")
    workload = WorkloadConfig(stream_share=0.0)
    loads = [
        LoadConfig(rate=rate, arrivals="uniform", duration=st.ceiling_seconds, warmup=1)
        for rate in st.ceiling_rates
    ]
    loads.append(LoadConfig(concurrency=64, duration=st.ceiling_seconds, warmup=1))
    for load in loads:
        cpu = _cpu()
        r = run_bench([target], load, workload).results[0]
        per_req = (_cpu() - cpu) / max(1, r.sent + r.warmup_requests) * 1e6
        if load.rate is not None:
            assert r.lag is not None
            kept = r.throughput >= 0.98 * load.rate and r.lag.p99 < 0.010
            what, offered, keep = f"open, {load.rate:g}/s", f"{r.offered_rate or 0:,.0f}", kept
        else:
            what, offered, keep = "closed, 64", "-", True
        lag = ms(r.lag.p99) if r.lag else "-"
        p50, p99 = (ms(r.latency.p50), ms(r.latency.p99)) if r.latency else ("-", "-")
        lines.append(
            f"| {what} | {offered} | {r.throughput:,.0f} | {p50} | {p99} | {lag} | "
            f"{per_req:,.0f} | {'yes' if keep else 'no'} |"
        )
        print(lines[-1], flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen_standard", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs; print, don't write")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="first wait up to this long for the CPUs to be under 15%% busy (default 60)",
    )
    args = parser.parse_args(argv)
    st = QUICK if args.quick else FULL
    busy = cpu_busy()
    deadline = time.monotonic() + args.wait_quiet
    while busy > 0.15 and time.monotonic() < deadline:
        print(f"the CPUs are {busy:.0%} busy: waiting for a quieter moment", flush=True)
        time.sleep(3)
        busy = cpu_busy(2)
    started = time.monotonic()
    out = [
        "# hotpath bench: the standard scenario",
        "",
        f"`python -m bench.loadgen_standard` on {time.strftime('%Y-%m-%d')}; {machine()}. "
        f"CPUs {busy:.0%} busy before the run.",
        "",
    ]
    with tempfile.TemporaryDirectory(prefix="hotpath-loadgen-") as d:
        tmp = Path(d)
        servers: list[Server] = []
        try:
            fast = start_mock(tmp, 0)
            servers.append(fast)
            slow = start_mock(tmp, 20)
            servers.append(slow)
            gateway = start_hotpath(tmp, 1, fast, slow)
            servers.append(gateway)
            targets = [
                Target(name=DIRECT, url=f"{slow.origin}/v1"),
                Target(name=HOTPATH, url=f"{gateway.origin}/v1"),
            ]
            note = _litellm(tmp, fast, slow, servers, targets)
            workload = WorkloadConfig(model=SLOW, stream_share=0.3, prompts=1000, zipf=1.1)
            out += [
                "## Mock direct vs through the gateway",
                "",
                f"Upstream: `hotpath mock-upstream --ttft 20ms` (all tokens at once). Workload: "
                f"{workload.describe()}. Each target in turn, the same requests; "
                f"{st.seconds:g} s measured after a {st.warmup:g} s warm-up. Latency from the "
                "intended send time (no coordinated omission), ms. hotpath: `hotpath serve`, "
                '1 worker, `tiers = ["memory://"]`. LiteLLM: ' + note,
                "",
            ]
            loads = [
                LoadConfig(rate=rate, duration=st.seconds, warmup=st.warmup) for rate in st.rates
            ]
            loads.append(LoadConfig(concurrency=32, duration=st.seconds, warmup=st.warmup))
            for load in loads:
                print(f"{time.monotonic() - started:.0f} s: {load.describe()}", flush=True)
                report = run_bench(targets, load, workload, on_progress=print)
                out += [f"### {load.describe().capitalize()}", ""]
                out += [*_scenario_table(list(report.results)), ""]
            print(f"{time.monotonic() - started:.0f} s: the generator's ceiling", flush=True)
            out += [
                "## The generator's ceiling",
                "",
                "Against the mock answering at once (no streams), so the generator and the "
                "mock share the 2 cores. `kept up`: answers/s within 2% of the offered rate "
                "and send lag p99 under 10 ms. CPU: this process's user + system time over "
                "the requests sent (warm-up included).",
                "",
                *_ceiling(st, fast),
                "",
            ]
        finally:
            for server in reversed(servers):
                server.stop()
    out.append(f"Took {time.monotonic() - started:.0f} s; CPUs {cpu_busy():.0%} busy after.")
    text = "\n".join(out) + "\n"
    print(text)
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "loadgen.md").write_text(text)
    return 0


def _litellm(
    tmp: Path, fast: Server, slow: Server, servers: list[Server], targets: list[Target]
) -> str:
    """Add LiteLLM's proxy to ``targets`` (its venv created if missing, as
    ``bench.gateway`` does); the note for the report."""
    exe, note = ensure_litellm(tmp / "pip.log")
    if exe is None:
        return f"left out: {note}."
    try:
        server = start_litellm(exe, tmp, 1, fast, slow, cache=True)
    except RuntimeError as exc:
        return f"left out: it did not start ({str(exc).splitlines()[0]})."
    servers.append(server)
    targets.append(Target(name=LITELLM, url=f"{server.origin}/v1", api_key=MASTER_KEY))
    return "`litellm --num_workers 1` with `cache: true` (local), on the same mock."


if __name__ == "__main__":
    sys.exit(main())
