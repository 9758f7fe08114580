"""The ``hotpath mock-upstream`` command: :func:`add_parser` and :func:`run`."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from hotpath._errors import ConfigError
from hotpath.providers.mock._config import FAULTS, Latency, MockConfig
from hotpath.providers.mock._server import CONFIG_ENV, MockUpstream, uvicorn_config

__all__ = ["add_parser", "config_from_args", "run"]


def _fault(text: str) -> tuple[str, float]:
    name, sep, prob = text.partition("=")
    try:
        value = float(prob)
    except ValueError:
        value = -1.0
    if not sep or name not in FAULTS or not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(
            f"expected NAME=PROBABILITY with NAME in {sorted(FAULTS)} and 0 <= PROBABILITY <= 1, "
            f"got {text!r}"
        )
    return name, value


def _model_fault(text: str) -> tuple[str, str, float]:
    target, sep, _prob = text.rpartition("=")
    model, colon, _ = target.rpartition(":")
    if not (sep and colon and model):
        raise argparse.ArgumentTypeError(
            f"expected MODEL:NAME=PROBABILITY (e.g. gpt-4o:500=1), got {text!r}"
        )
    fault, prob = _fault(text[len(model) + 1 :])
    return model, fault, prob


def _model_window(text: str) -> tuple[str, int]:
    model, sep, size = text.rpartition("=")
    if not (sep and model and size.isascii() and size.isdigit() and int(size) > 0):
        raise argparse.ArgumentTypeError(
            f"expected MODEL=TOKENS with TOKENS an integer > 0, got {text!r}"
        )
    return model, int(size)


def _latency(text: str) -> Latency:
    try:
        return Latency.parse(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(subparsers: Any) -> None:
    """Add the ``mock-upstream`` subcommand to an ``add_subparsers()`` object."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "mock-upstream",
        help="serve a mock OpenAI / Anthropic upstream (deterministic answers, latency, faults)",
        description="Serve a mock LLM upstream speaking the OpenAI and Anthropic APIs.",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=9000, help="port to bind, 0 = any free (default 9000)"
    )
    p.add_argument(
        "--ttft",
        type=_latency,
        default=Latency(),
        help="time to first token: 300ms, 0.3s, uniform:100ms,300ms, lognormal:200ms,0.5, "
        "exponential:200ms (default 0)",
    )
    p.add_argument(
        "--tps", type=float, default=None, help="tokens per second (default: all at once)"
    )
    p.add_argument("--completion-tokens", type=int, default=16, help="answer length (default 16)")
    p.add_argument("--embedding-dimensions", type=int, default=1536, help="default 1536")
    p.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="NAME=PROB",
        help=f"inject a fault at random; repeatable; NAME in {', '.join(sorted(FAULTS))}",
    )
    p.add_argument("--retry-after", type=float, default=1.0, help="Retry-After of 429s (seconds)")
    p.add_argument("--seed", type=int, default=0, help="seed of latency and fault sampling")
    p.add_argument("--api-key", default=None, help="require this API key")
    p.add_argument(
        "--model-fault",
        type=_model_fault,
        action="append",
        default=[],
        metavar="MODEL:NAME=PROB",
        help="inject a fault at random into requests for MODEL only (instead of --fault); "
        "repeatable",
    )
    p.add_argument(
        "--rate-limit-rpm", type=int, default=None, help="requests per minute (default: none)"
    )
    p.add_argument(
        "--rate-limit-tpm", type=int, default=None, help="tokens per minute (default: none)"
    )
    p.add_argument(
        "--context-window",
        type=int,
        default=None,
        help="context window of every model, in tokens (default: unlimited)",
    )
    p.add_argument(
        "--model-context-window",
        type=_model_window,
        action="append",
        default=[],
        metavar="MODEL=TOKENS",
        help="context window of one model; repeatable",
    )
    p.add_argument(
        "--capacity",
        type=int,
        default=None,
        help="requests served at full speed; more in flight stretch latency (default: unlimited)",
    )
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")


def config_from_args(args: argparse.Namespace) -> MockConfig:
    """The :class:`MockConfig` described by parsed ``mock-upstream`` arguments."""
    return MockConfig(
        ttft=args.ttft,
        tokens_per_second=args.tps,
        completion_tokens=args.completion_tokens,
        embedding_dimensions=args.embedding_dimensions,
        faults=dict(args.fault),
        retry_after=args.retry_after,
        seed=args.seed,
        api_key=args.api_key,
        rate_limit_rpm=args.rate_limit_rpm,
        rate_limit_tpm=args.rate_limit_tpm,
        context_window=args.context_window,
        context_windows=dict(args.model_context_window),
        capacity=args.capacity,
        model_faults=_group(args.model_fault),
    )


def _group(model_faults: list[tuple[str, str, float]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for model, fault, prob in model_faults:
        out.setdefault(model, {})[fault] = prob
    return out


def run(
    args: argparse.Namespace,
    *,
    stop: threading.Event | None = None,
    on_listening: Callable[[str], None] | None = None,
) -> int:
    """Serve in the foreground until SIGINT / SIGTERM (or until *stop* is set, for
    callers that embed the command); return the exit status.

    Prints ``mock upstream listening on URL`` once listening; *on_listening*, if
    given, also receives the URL. Bad options print an error and return 2.
    """
    try:
        config = config_from_args(args)
        if args.workers < 1:
            raise ConfigError(f"--workers: expected an int >= 1, got {args.workers!r}")
        if args.workers > 1 and stop is not None:
            raise ConfigError("--workers > 1 cannot be combined with an embedding stop event")
    except ConfigError as exc:
        print(f"hotpath mock-upstream: error: {exc}", file=sys.stderr)
        return 2
    if args.workers > 1:
        return _run_workers(args, config, on_listening)
    stop = stop or threading.Event()
    restore = _on_signals(stop)
    try:
        with MockUpstream(config, host=args.host, port=args.port) as mock:
            _announce(mock.url, on_listening)
            stop.wait()
    finally:
        restore()
    return 0


def _announce(url: str, on_listening: Callable[[str], None] | None) -> None:
    print(f"mock upstream listening on {url}", flush=True)
    if on_listening is not None:
        on_listening(url)


def _on_signals(stop: threading.Event) -> Callable[[], None]:
    """Set *stop* on SIGINT / SIGTERM (main thread only); returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def _run_workers(
    args: argparse.Namespace, config: MockConfig, on_listening: Callable[[str], None] | None
) -> int:
    # Each worker process builds its own app from the environment, so stats,
    # recorded requests and the RNG are per worker.
    from uvicorn.supervisors import Multiprocess

    os.environ[CONFIG_ENV] = config.to_json().decode()
    uv = uvicorn_config(
        "hotpath.providers.mock._server:app_from_env",
        args.host,
        args.port,
        factory=True,
        workers=args.workers,
    )
    sock = uv.bind_socket()
    host = f"[{args.host}]" if ":" in args.host else args.host
    _announce(f"http://{host}:{sock.getsockname()[1]}/v1", on_listening)
    try:
        Multiprocess(uv, sockets=[sock]).run()
    finally:
        sock.close()
    return 0
