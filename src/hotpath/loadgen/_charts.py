"""PNG charts of a report (matplotlib, from the ``bench`` extra).

Drawn on :class:`matplotlib.figure.Figure` objects rendered by the Agg canvas,
never through ``pyplot``: no global backend is switched and no window opens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hotpath.loadgen._bench import BenchReport
from hotpath.loadgen._results import Second, TargetResult

__all__ = ["charts_available", "write_charts"]

_EXTRA = "pip install 'hotpath[bench]'"


def charts_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(title: str, ylabel: str) -> tuple[Any, Any]:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ModuleNotFoundError(f"hotpath bench charts need matplotlib: {_EXTRA}") from exc
    fig = Figure(figsize=(9, 4.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel("seconds after the warm-up")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _line(
    ax: Any,
    result: TargetResult,
    value: Callable[[Second], float | None],
    label: str,
    **style: Any,
) -> bool:
    points = [(s.t + 0.5, v) for s in result.series if (v := value(s)) is not None]
    if not points:
        return False
    xs, ys = zip(*points, strict=True)
    ax.plot(xs, ys, label=label, **style)
    return True


def _save(fig: Any, ax: Any, path: Path) -> Path:
    ax.legend(loc="best", fontsize="small")
    fig.savefig(path)
    return path


def _answers(s: Second) -> float | None:
    """Answers completed in the second; ``None`` (not drawn) after the last send,
    where only the stragglers' answers arrive."""
    return s.completed if s.sent else None


def _ms(v: float | None) -> float | None:
    return None if v is None else v * 1000


def write_charts(report: BenchReport, out: Path) -> list[Path]:
    """``latency.png``, ``throughput.png`` and, when a target answered with
    ``x-hotpath-cache``, ``hit_rate.png`` in ``out``; returns the paths written."""
    colors = [f"C{i}" for i in range(10)]
    results: Sequence[TargetResult] = report.results
    written = []

    fig, ax = _figure("Latency from intended send time, per second", "ms (log scale)")
    for result, color in zip(results, colors, strict=False):
        name = result.name
        _line(ax, result, lambda s: _ms(s.p50), f"{name} p50", color=color)
        _line(ax, result, lambda s: _ms(s.p99), f"{name} p99", color=color, linestyle="--")
        _line(ax, result, lambda s: _ms(s.max), f"{name} max", color=color, linestyle=":")
    ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    written.append(_save(fig, ax, out / "latency.png"))

    fig, ax = _figure("Throughput: answers completed per second", "answers / s")
    for result, color in zip(results, colors, strict=False):
        _line(ax, result, _answers, f"{result.name} answers", color=color)
        if any(s.errors for s in result.series):
            _line(ax, result, lambda s: s.errors, f"{result.name} errors", color=color, ls=":")
    ax.set_ylim(bottom=0)
    written.append(_save(fig, ax, out / "throughput.png"))

    cached = [r for r in results if r.cache]
    if cached:
        fig, ax = _figure("Cache hit rate (x-hotpath-cache), per second", "hit rate")
        for result, color in zip(results, colors, strict=False):
            if result.cache:
                _line(ax, result, lambda s: s.hit_rate, result.name, color=color)
        ax.set_ylim(0, 1)
        written.append(_save(fig, ax, out / "hit_rate.png"))
    return written
