"""The Markdown report: a summary table with the targets side by side, then each
target's per-second series, with the charts linked in."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hotpath.loadgen._bench import BenchReport
from hotpath.loadgen._results import Percentiles, TargetResult

__all__ = ["ms", "render_markdown", "summary_table"]

Row = tuple[str, Callable[[TargetResult], float | int | str | None]]


def ms(seconds: float | None) -> str:
    """Milliseconds: ``0.512``, ``3.40``, ``12.3``, ``1,234``; ``-`` for ``None``."""
    if seconds is None:
        return "-"
    value = seconds * 1000
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def _pct(p: Percentiles | None, name: str) -> float | None:
    return None if p is None else float(getattr(p, name))


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%} ({part:,})" if whole else "-"


_QS = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99.9", "p999"), ("max", "max"))


def _rows(results: Sequence[TargetResult]) -> list[tuple[str, list[str], list[float | None]]]:
    """(label, cells, numbers for a ratio) of every summary row that applies."""
    rows: list[tuple[str, list[str], list[float | None]]] = []

    def add(label: str, cells: list[str], numbers: list[float | None] | None = None) -> None:
        rows.append((label, cells, numbers or [None] * len(cells)))

    add("requests measured", [f"{r.sent:,}" for r in results])
    add("answered", [f"{r.ok:,}" for r in results])
    add("errors", [f"{sum(r.errors.values()):,}" for r in results])
    for kind in sorted({k for r in results for k in r.errors}):
        add(f"&nbsp;&nbsp;{kind}", [f"{r.errors.get(kind, 0):,}" for r in results])
    if any(r.offered_rate is not None for r in results):
        offered = [r.offered_rate for r in results]
        add("offered rate (req/s)", [_rate(v) for v in offered], offered)
    add(
        "throughput (answers/s)",
        [_rate(r.throughput) for r in results],
        [r.throughput for r in results],
    )
    for what, attr in (("latency", "latency"), ("TTFT, streams", "ttft")):
        for label, name in _QS:
            values = [_pct(getattr(r, attr), name) for r in results]
            if any(v is not None for v in values):
                add(f"{what} {label} (ms)", [ms(v) for v in values], values)
    if any(r.lag is not None for r in results):
        for label, name in (("p50", "p50"), ("p99", "p99"), ("max", "max")):
            values = [_pct(r.lag, name) for r in results]
            add(f"send lag {label} (ms)", [ms(v) for v in values], values)
    if any(r.cache for r in results):
        answered = [sum(r.cache.values()) for r in results]
        add("cache hit rate", [_share(r.hits, n) for r, n in zip(results, answered, strict=True)])
        for tier in sorted({t for r in results for t in r.hits_by_tier()}):
            cells = [
                _share(r.hits_by_tier().get(tier, 0), n)
                for r, n in zip(results, answered, strict=True)
            ]
            add(f"&nbsp;&nbsp;from {tier}", cells)
        add("coalesced", [f"{r.coalesced:,}" for r in results])
    add("tokens in / out", [f"{r.prompt_tokens:,} / {r.completion_tokens:,}" for r in results])
    add(
        "distinct texts / meanings",
        [f"{r.distinct_texts:,} / {r.distinct_meanings:,}" for r in results],
    )
    return rows


def summary_table(results: Sequence[TargetResult]) -> list[str]:
    """The targets side by side; with exactly two, a column of second / first."""
    ratio = len(results) == 2
    head = ["", *(r.name for r in results)]
    if ratio:
        head.append(f"{results[1].name} / {results[0].name}")
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for label, cells, numbers in _rows(results):
        extra = []
        if ratio:
            a, b = numbers
            extra = [f"{b / a:.2f}x" if a and b is not None else ""]
        lines.append("| " + " | ".join([label, *cells, *extra]) + " |")
    return lines


def _series(result: TargetResult) -> list[str]:
    lines = [
        "| s | sent | ok | errors | answers/s | p50 | p90 | p99 | max | TTFT p50 | TTFT p99 "
        "| hit rate |",
        "|---:" * 12 + "|",
    ]
    for s in result.series:
        hit = "-" if s.hit_rate is None else f"{s.hit_rate:.0%}"
        cells = [str(s.t), f"{s.sent:,}", f"{s.ok:,}", f"{s.errors:,}", f"{s.completed:,}"]
        cells += [ms(s.p50), ms(s.p90), ms(s.p99), ms(s.max), ms(s.ttft_p50), ms(s.ttft_p99), hit]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_markdown(report: BenchReport, charts: Sequence[str] = ()) -> str:
    """The whole report; ``charts`` are PNG file names to link, next to report.md."""
    first = report.results[0]
    lines = [
        "# hotpath bench",
        "",
        f"{report.started} on {report.machine}.",
        "",
        f"- Load: {first.load}.",
        f"- Workload: {first.workload}.",
        "- Targets: " + ", ".join(f"{r.name} (`{r.url}`)" for r in report.results) + ".",
        *(f"- {note}" for note in report.notes),
        "",
        "Latency and time to first token count from each request's intended send time "
        "(no coordinated omission) and cover the answered requests; errors are counted "
        "apart. Percentiles from HDR histograms (at most 0.1% above the exact value).",
        "",
        *summary_table(report.results),
        "",
    ]
    for name in charts:
        lines += [f"![{name.removesuffix('.png')}]({name})", ""]
    for result in report.results:
        lines += [
            f"## Per second: {result.name}",
            "",
            "Rows are seconds of intended send time after the warm-up; `answers/s` counts "
            "answers by the second they completed. Milliseconds.",
            "",
            *_series(result),
            "",
        ]
    return "\n".join(lines)
