"""`hotpath demo` runs end to end on the embedded default and reports what the cache saved."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from hotpath._demo import DemoConfig, run_demo
from hotpath.cli import main


async def test_demo_reports_calls_saved_and_latency() -> None:
    out = io.StringIO()
    cfg = DemoConfig(calls=120, concurrency=4, prompts=30, latency=0.001, l1_entries=10, seed=1)
    await run_demo(cfg, Console(file=out, width=120))
    text = out.getvalue()
    assert "upstream calls saved" in text
    assert "hits in memory" in text and "hits in sqlite" in text
    assert "latency p99 (ms)" in text
    assert "from cache and made the run" in text


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--latency-ms", "-5"])
    assert exc.value.code == 2
    assert "argument --latency-ms: expected a positive number, got '-5'" in capsys.readouterr().err
