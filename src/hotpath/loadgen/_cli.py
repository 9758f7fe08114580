"""``hotpath bench``: :func:`run` (its flags are ``hotpath._bench_cli``).

Flags arrive as text and are checked here, each error naming its flag. The
servers asked for (``--start-mock``, ``--start-gateway``) are started as
processes for the run and stopped after it. The summary table goes to stdout,
progress to stderr; ``--out`` writes the full report.

Exit codes: 0 done (errors of the target are results, not failures); 1 a server
did not start, or no request was answered; 2 a bad flag or a missing extra.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hotpath._errors import ConfigError
from hotpath.loadgen._bench import Target, run_bench
from hotpath.loadgen._config import LoadConfig, WorkloadConfig, parse_rate
from hotpath.loadgen._histogram import require_hdrhistogram
from hotpath.loadgen._markdown import summary_table
from hotpath.loadgen._servers import ServerProcess, start_gateway, start_mock
from hotpath.providers.mock._config import FAULTS, Latency, parse_duration

__all__ = ["Plan", "plan_from_args", "run"]

_EXTRA = "pip install 'hotpath[bench]'"


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What one ``hotpath bench`` will do, from its flags."""

    load: LoadConfig
    workload: WorkloadConfig
    targets: tuple[str, ...]
    api_key: str | None = field(default=None, repr=False)
    mock_args: tuple[str, ...] = ()
    gateway_args: tuple[str, ...] | None = None
    gateway_upstream: str | None = None
    out: Path | None = None
    charts: bool = True


def _int(args: argparse.Namespace, name: str) -> int | None:
    text = getattr(args, name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(
            f"--{name.replace('_', '-')}: expected an integer, got {text!r}"
        ) from None


def _float(args: argparse.Namespace, name: str) -> float | None:
    text = getattr(args, name)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"--{name.replace('_', '-')}: expected a number, got {text!r}") from None


def _seconds(args: argparse.Namespace, name: str) -> float | None:
    text = getattr(args, name)
    flag = f"--{name.replace('_', '-')}"
    return None if text is None else parse_duration(text, what=flag)


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _flagged(error: ConfigError) -> ConfigError:
    """``LoadConfig.rate must ...`` -> ``--rate must ...``."""
    text = str(error)
    for prefix in ("LoadConfig.", "WorkloadConfig."):
        if text.startswith(prefix):
            name, _, rest = text[len(prefix) :].partition(" ")
            flag = "workload" if name == "kind" else name
            return ConfigError(f"--{flag.replace('_', '-')} {rest}")
    return error


def _mock_args(args: argparse.Namespace) -> tuple[str, ...]:
    ttft = args.mock_ttft or "20ms"
    try:
        Latency.parse(ttft)
    except ConfigError as exc:
        raise ConfigError(f"--mock-ttft: {exc}") from None
    out = ["--ttft", ttft]
    if (tps := _float(args, "mock_tps")) is not None:
        if not tps > 0:
            raise ConfigError(f"--mock-tps: expected a number > 0, got {args.mock_tps!r}")
        out += ["--tps", repr(tps)]
    for name in ("mock_completion_tokens", "mock_workers"):
        if (value := _int(args, name)) is not None:
            if value < 1:
                raise ConfigError(f"--{name.replace('_', '-')}: expected an integer >= 1")
            out += [f"--{name.removeprefix('mock_').replace('_', '-')}", str(value)]
    for fault in args.mock_fault:
        name, sep, prob = fault.partition("=")
        try:
            ok = bool(sep) and name in FAULTS and 0 <= float(prob) <= 1
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError(
                f"--mock-fault: expected NAME=PROBABILITY with NAME in {sorted(FAULTS)}, "
                f"got {fault!r}"
            )
        out += ["--fault", fault]
    return tuple(out)


def _gateway_args(args: argparse.Namespace) -> tuple[str, ...]:
    out: list[str] = []
    if args.gateway_config:
        out += ["--config", args.gateway_config]
    if args.gateway_tiers:
        out += ["--cache-tiers", args.gateway_tiers]
    if (workers := _int(args, "gateway_workers")) is not None:
        if workers < 1:
            raise ConfigError(f"--gateway-workers: expected an integer >= 1, got {workers!r}")
        out += ["--workers", str(workers)]
    return tuple(out)


def plan_from_args(args: argparse.Namespace) -> Plan:
    """The :class:`Plan` of parsed ``bench`` flags; :class:`ConfigError` names a bad one."""
    if args.start_gateway and not (args.start_mock or args.gateway_upstream):
        raise ConfigError("--start-gateway needs --start-mock or --gateway-upstream URL")
    first = args.url or ("gateway" if args.start_gateway else "mock" if args.start_mock else None)
    if first is None:
        raise ConfigError("give --url URL, or --start-mock (and --start-gateway)")
    targets = (first, *args.compare)
    for spec in targets:
        _, url = _split_target(spec)
        if url == "mock" and not args.start_mock:
            raise ConfigError(f"target {spec!r}: no --start-mock")
        if url == "gateway" and not args.start_gateway:
            raise ConfigError(f"target {spec!r}: no --start-gateway")
        if url not in ("mock", "gateway") and urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError(f"target {spec!r}: expected an http(s):// URL, 'mock' or 'gateway'")
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise ConfigError(f"--api-key-env: the variable {args.api_key_env!r} is not set")
    duration = _seconds(args, "duration")
    requests = _int(args, "requests")
    rate = None if args.rate is None else parse_rate(args.rate)
    try:
        load = LoadConfig(
            **_given(
                rate=rate,
                arrivals=args.arrivals,
                concurrency=_int(args, "concurrency"),
                requests=requests,
                warmup=_seconds(args, "warmup"),
                timeout=_seconds(args, "timeout"),
                max_in_flight=_int(args, "max_in_flight"),
                seed=_int(args, "seed"),
            ),
            duration=duration if duration is not None or requests is not None else 10.0,
        )
        workload = WorkloadConfig(
            **_given(
                kind=args.workload,
                model=args.model,
                prompts=_int(args, "prompts"),
                zipf=_float(args, "zipf"),
                stream_share=_float(args, "stream_share"),
                context_tokens=_int(args, "context_tokens"),
                sessions=_int(args, "sessions"),
                turns=_int(args, "turns"),
                max_tokens=_int(args, "max_tokens"),
                seed=_int(args, "seed"),
            )
        )
    except ConfigError as exc:
        raise _flagged(exc) from None
    return Plan(
        load=load,
        workload=workload,
        targets=targets,
        api_key=api_key,
        mock_args=_mock_args(args) if args.start_mock else (),
        gateway_args=_gateway_args(args) if args.start_gateway else None,
        gateway_upstream=args.gateway_upstream,
        out=Path(args.out) if args.out else None,
        charts=not args.no_charts,
    )


def _split_target(spec: str) -> tuple[str | None, str]:
    name, sep, url = spec.partition("=")
    if sep and "://" not in name:
        return name, url
    return None, spec


def _target(spec: str, servers: dict[str, ServerProcess], api_key: str | None) -> Target:
    name, url = _split_target(spec)
    if url in servers:
        return Target(name=name or url, url=servers[url].url, api_key=api_key)
    parts = urlsplit(url)
    return Target(name=name or parts.netloc or url, url=url, api_key=api_key)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Run ``hotpath bench``; returns the exit code (see the module docstring)."""
    try:
        plan = plan_from_args(args)
        require_hdrhistogram()
    except (ConfigError, ModuleNotFoundError) as exc:
        print(f"hotpath bench: {exc}", file=sys.stderr)
        return 2
    charts = plan.out is not None and plan.charts
    if charts:
        from hotpath.loadgen._charts import charts_available

        if not charts_available():
            _say(f"hotpath bench: no charts, matplotlib is missing: {_EXTRA}")
            charts = False
    notes: list[str] = []
    servers: dict[str, ServerProcess] = {}
    with (
        tempfile.TemporaryDirectory(prefix="hotpath-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        try:
            if plan.mock_args:
                servers["mock"] = stack.enter_context(start_mock(Path(tmp), plan.mock_args))
                notes.append(f"mock: `hotpath mock-upstream {' '.join(plan.mock_args)}`.")
            if plan.gateway_args is not None:
                upstream = plan.gateway_upstream or servers["mock"].url
                gateway = start_gateway(Path(tmp), upstream, plan.gateway_args)
                servers["gateway"] = stack.enter_context(gateway)
                how = " ".join(plan.gateway_args)
                notes.append(
                    f"gateway: `hotpath serve --upstream {upstream}{' ' + how if how else ''}`."
                )
        except RuntimeError as exc:
            print(f"hotpath bench: {exc}", file=sys.stderr)
            return 1
        targets = [_target(spec, servers, plan.api_key) for spec in plan.targets]
        report = run_bench(targets, plan.load, plan.workload, notes=notes, on_progress=_say)
    print(f"\n{plan.load.describe()}; {plan.workload.describe()}\n")
    print("\n".join(summary_table(report.results)))
    if plan.out is not None:
        from hotpath.loadgen._report import write_report

        for path in write_report(report, plan.out, charts=charts):
            _say(f"wrote {path}")
    return 0 if any(r.ok for r in report.results) else 1
