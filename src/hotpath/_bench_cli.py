"""``hotpath bench``'s flags. They arrive as text and are checked, each error
naming its flag, by :mod:`hotpath.loadgen._cli`, which runs the command; this
module imports nothing of the load generator, so ``hotpath --help`` stays fast."""

from __future__ import annotations

import argparse

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``hotpath bench`` to ``sub``."""
    bench = sub.add_parser(
        "bench",
        help="load-test the gateway or any OpenAI-compatible endpoint",
        description="Send a seeded workload to an OpenAI-compatible endpoint in an open loop "
        "(--rate) or a closed loop (--concurrency) and report latency, time to first token, "
        "throughput, errors and the gateway's cache hits. See docs/load-bench.md.",
    )
    target = bench.add_argument_group("targets")
    target.add_argument(
        "--url",
        metavar="[NAME=]URL",
        help="base URL of the target (.../v1); default: the started gateway, else the mock",
    )
    target.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="[NAME=]URL",
        help="another target, measured after the first with the same requests; "
        "'mock' or 'gateway' name the started servers; repeatable",
    )
    target.add_argument("--api-key-env", metavar="VAR", help="variable holding the API key")
    target.add_argument("--model", help="model of the requests (default gpt-4o-mini)")
    servers = bench.add_argument_group("servers started for the run")
    servers.add_argument("--start-mock", action="store_true", help="start a mock upstream")
    servers.add_argument("--mock-ttft", metavar="LATENCY", help="its time to first token (20ms)")
    servers.add_argument("--mock-tps", metavar="N", help="its tokens/s (default: all at once)")
    servers.add_argument("--mock-completion-tokens", metavar="N", help="its answer length (16)")
    servers.add_argument(
        "--mock-fault", action="append", default=[], metavar="NAME=PROB", help="inject faults"
    )
    servers.add_argument("--mock-workers", metavar="N", help="its worker processes (1)")
    servers.add_argument(
        "--start-gateway", action="store_true", help="start hotpath serve in front of the mock"
    )
    servers.add_argument("--gateway-upstream", metavar="URL", help="its upstream instead")
    servers.add_argument("--gateway-config", metavar="FILE", help="its TOML config")
    servers.add_argument(
        "--gateway-tiers", metavar="URLS", help="its cache tiers (default: serve's)"
    )
    servers.add_argument("--gateway-workers", metavar="N", help="its worker processes (1)")
    load = bench.add_argument_group("load")
    loop = load.add_mutually_exclusive_group()
    loop.add_argument("--rate", help="open loop at this arrival rate: 200/s, 6000/m")
    loop.add_argument("--concurrency", metavar="N", help="closed loop of N workers (default 32)")
    load.add_argument("--arrivals", choices=("poisson", "uniform"), help="default poisson")
    load.add_argument("--duration", metavar="SECONDS", help="measured time (default 10s)")
    load.add_argument("--requests", metavar="N", help="measured requests (at most)")
    load.add_argument("--warmup", metavar="SECONDS", help="unmeasured start (default 2s)")
    load.add_argument("--timeout", metavar="SECONDS", help="per request (default 60s)")
    load.add_argument("--max-in-flight", metavar="N", help="open loop's open requests (1024)")
    work = bench.add_argument_group("workload")
    work.add_argument(
        "--workload", choices=("zipf", "paraphrase", "long-context", "agent"), help="default zipf"
    )
    work.add_argument("--prompts", metavar="N", help="distinct prompts / meanings / documents")
    work.add_argument("--zipf", metavar="S", help="Zipf exponent (default 1.1)")
    work.add_argument("--stream-share", metavar="F", help="share streamed, 0..1 (default 0.3)")
    work.add_argument("--context-tokens", metavar="K", help="long-context size (default 8000)")
    work.add_argument("--sessions", metavar="N", help="agent sessions at a time (default 16)")
    work.add_argument("--turns", metavar="N", help="calls per agent session (default 6)")
    work.add_argument("--max-tokens", metavar="N", help="max_tokens of every request")
    work.add_argument("--seed", metavar="N", help="seed of workload and arrivals (default 0)")
    output = bench.add_argument_group("output")
    output.add_argument("--out", metavar="DIR", help="write report.md, report.json and PNGs")
    output.add_argument("--no-charts", action="store_true", help="no PNGs")
