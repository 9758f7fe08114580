"""`hotpath demo` replays one agent workload straight to the mock upstream and through
the gateway, and reports what the gateway saved."""

from __future__ import annotations

import io
import tempfile
import threading
from pathlib import Path

import pytest
from rich.console import Console

from hotpath._demo import DemoConfig, DemoReport, config_from_flags, run_demo
from hotpath._demo_workload import MODEL, build_sessions
from hotpath._errors import ConfigError
from hotpath.cli import main
from hotpath.cost import PriceTable, Usage

TINY = DemoConfig(
    calls=60,
    sessions=6,
    prompts=20,
    ttft=0.04,
    tokens_per_second=2000,
    completion_tokens=8,
    think=0.002,
    memory_entries=4,
    seed=1,
)
TINY_FLAGS = [
    *("--calls", "60", "--sessions", "6", "--prompts", "20", "--ttft-ms", "40"),
    *("--tokens-per-second", "2000", "--completion-tokens", "8", "--think-ms", "2"),
    *("--memory-entries", "4", "--seed", "1"),
]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoReport, str, Path]:
    """One tiny run, its printed output, and the directory it used as temp dir and cwd."""
    root = tmp_path_factory.mktemp("demo")
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setattr(tempfile, "tempdir", str(root))
        report = run_demo(TINY, Console(file=out, width=240))
    return report, out.getvalue(), root


def test_the_gateway_pass_calls_the_upstream_less_and_answers_from_both_tiers(
    demo_run: tuple[DemoReport, str, Path],
) -> None:
    report = demo_run[0]
    direct, gateway = report.direct, report.gateway
    assert report.errors == ()
    assert direct.calls == gateway.calls == TINY.calls
    assert direct.upstream_calls == TINY.calls
    assert gateway.upstream_calls < direct.upstream_calls
    assert gateway.hits > 0
    assert gateway.hits_by_tier.get("memory", 0) > 0
    assert gateway.hits_by_tier.get("sqlite", 0) > 0
    # Every call was a hit, joined a call in flight, or made the one upstream call.
    assert gateway.hits + gateway.coalesced + gateway.upstream_calls == gateway.calls
    assert gateway.prompt_tokens < direct.prompt_tokens
    assert gateway.completion_tokens < direct.completion_tokens
    assert direct.ttft[0.5] is not None and gateway.ttft[0.5] is not None


def test_the_headers_agree_with_the_gateway_metrics(demo_run: tuple[DemoReport, str, Path]) -> None:
    report = demo_run[0]
    metrics, gateway = report.metrics, report.gateway
    assert metrics.hits_by_tier == gateway.hits_by_tier
    assert metrics.coalesced == gateway.coalesced
    assert metrics.upstream_calls == gateway.upstream_calls
    assert metrics.misses == gateway.calls - gateway.hits


def test_what_the_gateway_spent_and_saved_adds_up_to_the_direct_spend(
    demo_run: tuple[DemoReport, str, Path],
) -> None:
    """Every call of the gateway pass was either paid for upstream or saved; each
    costs what the same call cost in the direct pass (the answers are deterministic)."""
    report = demo_run[0]
    price = PriceTable.default().lookup(MODEL)
    assert price is not None
    direct = price.cost(Usage(report.direct.prompt_tokens, report.direct.completion_tokens))
    spent = price.cost(Usage(report.gateway.prompt_tokens, report.gateway.completion_tokens))
    assert report.metrics.cost_usd == pytest.approx(spent)
    assert report.metrics.saved_usd > 0
    assert report.metrics.cost_usd + report.metrics.saved_usd == pytest.approx(direct)


def test_the_table_and_summary_are_printed(demo_run: tuple[DemoReport, str, Path]) -> None:
    text = demo_run[1]
    for row in (
        "latency p50 (ms)",
        "latency p99 (ms)",
        "TTFT (streams) p95 (ms)",
        "wall time (s)",
        "upstream calls",
        "prompt tokens upstream",
        "completion tokens upstream",
        "cache hit rate",
        "from memory",
        "from SQLite",
        "coalesced requests",
        "upstream spend ($, gpt-4o-mini)",
        "saved by hits + coalescing ($)",
    ):
        assert row in text, row
    assert "through hotpath" in text and "direct" in text
    assert "fewer upstream calls" in text


def test_nothing_is_left_behind(demo_run: tuple[DemoReport, str, Path]) -> None:
    """The SQLite file lived in a temporary directory, removed at the end; no
    server thread survives the run."""
    assert list(demo_run[2].iterdir()) == []
    names = [t.name for t in threading.enumerate()]
    assert not [n for n in names if n.startswith(("asgi-", "hotpath-mock-"))], names


def test_both_passes_replay_the_same_seeded_workload() -> None:
    first, again = build_sessions(TINY), build_sessions(TINY)
    assert first == again
    assert len(first) == TINY.sessions
    calls = [c for session in first for c in session]
    assert len(calls) == TINY.calls
    prompts = [c.prompt for c in calls]
    assert len(set(prompts)) < len(prompts)  # Zipf: repeats
    streamed = sum(c.stream for c in calls)
    assert streamed > 0  # some streamed ...
    assert streamed < len(calls)  # ... some not
    assert build_sessions(DemoConfig(calls=60, seed=2)) != build_sessions(DemoConfig(calls=60))


def test_cli_runs_the_demo_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", *TINY_FLAGS]) == 0
    out = capsys.readouterr().out
    assert "through hotpath" in out
    assert "demo finished in" in out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--calls", "0"], "argument --calls: expected a positive integer, got '0'"),
        (["--ttft-ms", "-5"], "argument --ttft-ms: expected a positive number, got '-5'"),
        (["--stream-share", "1.5"], "--stream-share: expected a number in [0, 1], got 1.5"),
        (["--think-ms", "-1"], "--think-ms: expected a finite number >= 0, got -1.0"),
    ],
)
def test_cli_rejects_bad_arguments(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """argparse rejects what it can type-check (SystemExit 2), the config the rest (2)."""
    try:
        code: object = main(["demo", *flags])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_config_names_the_bad_field() -> None:
    with pytest.raises(ConfigError, match=r"DemoConfig.sessions: expected an int >= 1, got 0"):
        DemoConfig(sessions=0)
    with pytest.raises(ConfigError, match=r"DemoConfig.ttft: expected a finite number > 0"):
        DemoConfig(ttft=float("inf"))
    with pytest.raises(ConfigError, match=r"--ttft-ms: expected a finite number >= 0, got inf"):
        config_from_flags({"ttft_ms": float("inf")})
