"""The ``hotpath`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotpath", description="Make LLM agents fast and cheap.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run an agent workload with and without the cache")
    demo.add_argument(
        "--calls", type=_positive_int, default=2000, help="agent calls (default 2000)"
    )
    demo.add_argument("--concurrency", type=_positive_int, default=32, help="concurrent agents")
    demo.add_argument("--prompts", type=_positive_int, default=2000, help="distinct prompts")
    demo.add_argument("--zipf", type=_positive_float, default=1.1, help="Zipf exponent of prompts")
    demo.add_argument(
        "--latency-ms", type=_positive_float, default=150.0, help="simulated LLM latency"
    )
    demo.add_argument("--l1-entries", type=_positive_int, default=200, help="memory tier size")
    demo.add_argument("--seed", type=int, default=42)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from hotpath._demo import DemoConfig
        from hotpath._demo import main as demo_main

        demo_main(
            DemoConfig(
                calls=args.calls,
                concurrency=args.concurrency,
                prompts=args.prompts,
                zipf_s=args.zipf,
                latency=args.latency_ms / 1000,
                l1_entries=args.l1_entries,
                seed=args.seed,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
