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
    demo = sub.add_parser(
        "demo",
        help="replay an agent workload straight to a mock LLM, then through the gateway",
        description="Replay an agent workload straight to a mock upstream, then through the "
        "gateway (memory + SQLite cache), and compare. No Redis, no API key.",
    )
    for flag, kind, text in (
        ("--calls", _positive_int, "agent calls per pass (default 1500)"),
        ("--sessions", _positive_int, "concurrent agents (default 32)"),
        ("--prompts", _positive_int, "distinct prompts (default 1000)"),
        ("--zipf", _positive_float, "Zipf exponent of the prompts (default 1.1)"),
        ("--stream-share", float, "share of streamed calls, 0..1 (default 0.33)"),
        ("--ttft-ms", _positive_float, "upstream time to first token (default 300)"),
        ("--tokens-per-second", _positive_float, "upstream token rate (default 200)"),
        ("--completion-tokens", _positive_int, "upstream answer length (default 32)"),
        ("--think-ms", float, "mean pause between an agent's calls (default 10)"),
        ("--memory-entries", _positive_int, "gateway memory tier size (default 64)"),
        ("--seed", int, "seed of the workload (default 42)"),
    ):
        demo.add_argument(flag, type=kind, metavar="X", help=text)
    _add_serve(sub)
    hash_key = sub.add_parser("hash-key", help="print the sha256 of a gateway key, for the config")
    hash_key.add_argument("key", help="the key clients will send as 'Authorization: Bearer KEY'")
    from hotpath.providers.mock._cli import add_parser as add_mock_parser

    add_mock_parser(sub)
    from hotpath._spend_cli import add_parser as add_spend_parser

    add_spend_parser(sub)
    from hotpath._bench_cli import add_parser as add_bench_parser

    add_bench_parser(sub)
    return parser


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser(
        "serve",
        help="run the OpenAI-compatible gateway",
        description="Run the gateway. Flags override HOTPATH_* variables, which override "
        "the config file.",
    )
    serve.add_argument("--config", help="TOML config file (default: $HOTPATH_CONFIG)")
    serve.add_argument("--upstream", help="base URL of an OpenAI-compatible upstream (.../v1)")
    serve.add_argument(
        "--upstream-kind", choices=("openai", "anthropic"), help="API the upstream speaks"
    )
    serve.add_argument(
        "--upstream-api-key-env", help="environment variable holding the upstream's API key"
    )
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default 8080)")
    serve.add_argument("--workers", type=_positive_int, help="worker processes (default 1)")
    serve.add_argument(
        "--cache-tiers",
        help="comma-separated tier URLs, fastest first "
        "(default memory://?max_entries=50000,sqlite:///.hotpath/cache.db)",
    )
    serve.add_argument("--cache-ttl", type=_positive_float, help="seconds an answer is kept")
    serve.add_argument("--no-cache", action="store_true", help="turn the cache off")
    serve.add_argument(
        "--log-format", choices=("text", "json"), help="log lines as text or JSON (default text)"
    )
    serve.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error", "critical"),
        help="the least severe level logged (default info)",
    )


def _serve(args: argparse.Namespace) -> int:
    from hotpath._errors import ConfigError
    from hotpath.gateway._serve import serve

    overrides = {
        "upstream.base_url": args.upstream,
        "upstream.kind": args.upstream_kind,
        "upstream.api_key_env": args.upstream_api_key_env,
        "server.host": args.host,
        "server.port": args.port,
        "server.workers": args.workers,
        "cache.ttl": args.cache_ttl,
        "cache.enabled": False if args.no_cache else None,
        "cache.tiers": (
            [t.strip() for t in args.cache_tiers.split(",") if t.strip()]
            if args.cache_tiers
            else None
        ),
    }
    # Only the flags given, so that a test of the overrides above stays exact.
    if args.log_format is not None:
        overrides["server.log_format"] = args.log_format
    if args.log_level is not None:
        overrides["server.log_level"] = args.log_level
    try:
        return serve(args.config, overrides)
    except ConfigError as exc:
        print(f"hotpath serve: bad configuration: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "hash-key":
        from hotpath.gateway._config import hash_key

        print(hash_key(args.key))
        return 0
    if args.command == "spend":
        from hotpath._spend_cli import run as spend

        return spend(args)
    if args.command == "bench":
        from hotpath.loadgen._cli import run as bench

        return bench(args)
    if args.command == "mock-upstream":
        from hotpath.providers.mock._cli import run

        return run(args)
    if args.command == "demo":
        from hotpath._demo import config_from_flags
        from hotpath._demo import main as demo_main
        from hotpath._errors import ConfigError

        try:
            config = config_from_flags({k: v for k, v in vars(args).items() if k != "command"})
        except ConfigError as exc:
            print(f"hotpath demo: {exc}", file=sys.stderr)
            return 2
        return demo_main(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
