"""Real runs: against the mock's injected faults, and ``hotpath bench`` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import hotpath.loadgen
from hotpath._reply import usage_of
from hotpath.cli import main
from hotpath.loadgen import LoadConfig, Target, WorkloadConfig, run_bench
from hotpath.providers.mock import MockConfig, MockUpstream

PNG = b"\x89PNG\r\n\x1a\n"


def test_all_names_exist_and_are_sorted() -> None:
    names = hotpath.loadgen.__all__
    assert sorted(names) == list(names)
    for name in names:
        assert hasattr(hotpath.loadgen, name), name


def test_importing_the_package_loads_neither_extra() -> None:
    code = (
        "import sys, hotpath.loadgen, hotpath.cli\n"
        "hotpath.cli.build_parser()\n"
        "print(sorted(m for m in ('hdrh', 'matplotlib') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_errors_are_counted_by_kind_from_the_mocks_faults() -> None:
    """Every 429 and 500 the mock injected is in the report, under its status."""
    config = MockConfig(faults={"500": 0.1, "429": 0.05}, seed=3)
    with MockUpstream(config) as mock:
        report = run_bench(
            [Target(name="mock", url=mock.url)],
            LoadConfig(concurrency=8, requests=400, duration=None, warmup=0),
            WorkloadConfig(stream_share=0.3),
        )
        stats = mock.stats()
    result = report.results[0]
    assert result.sent == 400
    assert set(result.errors) == {"HTTP 429", "HTTP 500"}
    assert result.errors["HTTP 500"] > result.errors["HTTP 429"]
    assert sum(result.errors.values()) == stats.faults_injected
    assert result.ok == 400 - stats.faults_injected
    assert result.latency is not None
    assert result.latency.count == result.ok
    assert result.cache == {}  # no x-hotpath-cache from the mock
    doc = result.to_dict()
    assert doc["error_count"] == stats.faults_injected


@pytest.mark.slow
def test_cli_run_against_mock_and_gateway_writes_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    code = main(
        [
            "bench",
            "--start-mock",
            "--mock-ttft",
            "5ms",
            "--start-gateway",
            "--gateway-tiers",
            "memory://",
            "--compare",
            "mock",
            "--rate",
            "150/s",
            "--duration",
            "1s",
            "--warmup",
            "0.3s",
            "--workload",
            "zipf",
            "--prompts",
            "20",
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "| gateway | mock | mock / gateway |" in captured.out
    assert "cache hit rate" in captured.out
    doc = json.loads((out / "report.json").read_text())
    assert doc["load"]["mode"] == "open"
    gateway, mock = doc["results"]
    assert [gateway["name"], mock["name"]] == ["gateway", "mock"]
    for result in (gateway, mock):
        assert result["ok"] == result["sent"]
        assert result["sent"] > 100
        assert result["latency"]["p50"] > 0
        assert result["series"]
    assert gateway["hit_rate"] > 0.5  # 20 prompts: most repeat
    assert mock["hit_rate"] is None
    assert mock["latency"]["p50"] >= 0.005  # the mock's time to first token
    md = (out / "report.md").read_text()
    assert "## Per second: gateway" in md
    assert "![latency](latency.png)" in md
    for name in ("latency.png", "throughput.png", "hit_rate.png"):
        assert (out / name).read_bytes().startswith(PNG), name


def test_cli_rejects_bad_flags_naming_them(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, needle in (
        (["bench", "--url", "http://127.0.0.1:1/v1", "--rate", "fast"], "'fast'"),
        (["bench"], "--url"),
        (["bench", "--start-gateway"], "--start-gateway needs"),
        (["bench", "--start-mock", "--compare", "gateway"], "no --start-gateway"),
        (["bench", "--url", "ftp://x"], "http(s)://"),
        (["bench", "--url", "http://127.0.0.1:1/v1", "--stream-share", "2"], "--stream-share"),
        (["bench", "--url", "http://127.0.0.1:1/v1", "--duration", "soon"], "--duration"),
        (["bench", "--start-mock", "--mock-fault", "404=0.1"], "--mock-fault"),
        (["bench", "--url", "http://127.0.0.1:1/v1", "--api-key-env", "NO_SUCH_VAR_X"], "NO_"),
    ):
        assert main(argv) == 2, argv
        assert needle in capsys.readouterr().err, argv


def test_connection_failures_are_errors_not_crashes() -> None:
    from hotpath.loadgen._servers import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    report = run_bench(
        [Target(name="nothing", url=url)],
        LoadConfig(concurrency=2, requests=5, duration=None, warmup=0),
        WorkloadConfig(),
    )
    assert report.results[0].errors == {"connect": 5}


def test_a_usage_field_of_the_wrong_type_reads_as_no_usage() -> None:
    assert usage_of({"usage": {"prompt_tokens": "12", "completion_tokens": [1]}}) == (0, 0)
    assert usage_of({"usage": {"input_tokens": 7, "output_tokens": 3}}) == (7, 3)
    assert usage_of({"usage": None}) == (0, 0)
