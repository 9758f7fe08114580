"""Writing a report to a directory: ``report.md``, ``report.json`` and the charts."""

from __future__ import annotations

from pathlib import Path

import orjson

from hotpath.loadgen._bench import BenchReport
from hotpath.loadgen._markdown import render_markdown

__all__ = ["write_report"]


def write_report(report: BenchReport, out: Path, *, charts: bool = True) -> list[Path]:
    """Write the report into ``out`` (created if missing); returns the files written.

    ``charts`` needs matplotlib (the ``bench`` extra): without it the import error
    names the extra, before anything is written.
    """
    out.mkdir(parents=True, exist_ok=True)
    pngs: list[Path] = []
    if charts:
        from hotpath.loadgen._charts import write_charts

        pngs = write_charts(report, out)
    md = out / "report.md"
    md.write_text(render_markdown(report, [p.name for p in pngs]) + "\n", encoding="utf-8")
    js = out / "report.json"
    js.write_bytes(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2) + b"\n")
    return [md, js, *pngs]
