"""A load generator for the gateway and any OpenAI-compatible endpoint.

``hotpath bench`` on the command line; in Python::

    from hotpath.loadgen import LoadConfig, Target, WorkloadConfig, run_bench, write_report

    report = run_bench(
        [Target(name="gateway", url="http://127.0.0.1:8080/v1")],
        LoadConfig(rate=200, duration=30),          # open loop; or concurrency=32
        WorkloadConfig(kind="zipf", stream_share=0.3),
    )
    write_report(report, Path("out"))               # report.md, report.json, *.png

Latency counts from each request's intended send time (no coordinated omission).
Histograms need the ``hdrhistogram`` package and charts ``matplotlib``: both come
with ``pip install 'hotpath[bench]'``. See ``docs/load-bench.md``.
"""

from hotpath.loadgen._bench import BenchReport, Target, measure, run_bench
from hotpath.loadgen._client import HttpSender, Outcome
from hotpath.loadgen._config import LoadConfig, WorkloadConfig, parse_rate
from hotpath.loadgen._histogram import LatencyHistogram
from hotpath.loadgen._loops import LoopClock, PerfClock, Shot, run_closed_loop, run_open_loop
from hotpath.loadgen._markdown import render_markdown
from hotpath.loadgen._recorder import Recorder
from hotpath.loadgen._report import write_report
from hotpath.loadgen._results import Percentiles, Second, TargetResult
from hotpath.loadgen._schedule import Due, OpenSchedule, arrival_offsets
from hotpath.loadgen._workload import RequestSpec, make_workload

__all__ = [
    "BenchReport",
    "Due",
    "HttpSender",
    "LatencyHistogram",
    "LoadConfig",
    "LoopClock",
    "OpenSchedule",
    "Outcome",
    "Percentiles",
    "PerfClock",
    "Recorder",
    "RequestSpec",
    "Second",
    "Shot",
    "Target",
    "TargetResult",
    "WorkloadConfig",
    "arrival_offsets",
    "make_workload",
    "measure",
    "parse_rate",
    "render_markdown",
    "run_bench",
    "run_closed_loop",
    "run_open_loop",
    "write_report",
]
