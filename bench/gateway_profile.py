"""Profile the gateway: py-spy on ``hotpath serve`` while wrk drives cache hits, or
with ``--miss`` misses (a new prompt each time, to a mock answering at once).

Run: ``python -m bench.gateway_profile [--miss] [--seconds 15] [--top 25]`` (needs ``py-spy``:
``pip install py-spy`` into the venv, not a project dependency, and ``wrk``). Prints
the frames with the most self time (samples whose innermost Python frame is that
function; time in C code, orjson or uvloop's, counts toward the Python function that
called it), then the same list restricted to hotpath's gateway and uvicorn, and
keeps the collapsed stacks (``--out``) for a flame graph.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.gateway_load import Conn, body, run_wrk, wrk_script
from bench.gateway_procs import FAST, start_hotpath, start_mock


def _frame(text: str) -> str:
    """``func (path/to/file.py:12)`` -> ``func (file.py:12)`` with the package kept."""
    name, _, where = text.partition(" (")
    path = where.rstrip(")")
    for marker in ("site-packages/", "src/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def self_times(raw: Path) -> tuple[collections.Counter[str], int]:
    """Self samples per frame, from py-spy's ``--format raw`` (collapsed stacks)."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        counts[_frame(leaf)] += int(n)
        total += int(n)
    return counts, total


def _table(rows: list[tuple[str, int]], total: int) -> list[str]:
    lines = ["| self % | samples | frame |", "| ---: | ---: | --- |"]
    lines += [f"| {100 * n / total:.1f} | {n} | `{frame}` |" for frame, n in rows]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_profile", description=__doc__)
    parser.add_argument("--seconds", type=float, default=15.0, help="wrk / py-spy duration")
    parser.add_argument("--top", type=int, default=25, help="frames to list")
    parser.add_argument("--conns", type=int, default=64, help="wrk connections")
    parser.add_argument("--out", default="", help="keep the collapsed stacks in this file")
    parser.add_argument("--miss", action="store_true", help="every prompt new: the miss path")
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy not found: pip install py-spy", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="hotpath-profile-") as d:
        tmp = Path(d)
        mock = start_mock(tmp, 0)
        gateway = start_hotpath(tmp, 1, mock, mock)
        try:
            conn = Conn(gateway.port)
            script = wrk_script(tmp, "load", FAST, unique="p" if args.miss else None)
            conn.request(body(FAST, "profile"))
            status, headers, _, _ = conn.request(body(FAST, "profile"))  # a hit
            conn.close()
            run_wrk(gateway.port, script, args.conns, 2)  # fill the cache, warm up
            raw = tmp / "stacks.txt"
            record = [spy, "record", "--pid", str(gateway.proc.pid), "--rate", "250"]
            record += ["--function", "--format", "raw", "-o", str(raw)]
            record += ["--duration", f"{int(args.seconds) + 1}"]
            recorder = subprocess.Popen(record, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            res = run_wrk(gateway.port, script, args.conns, args.seconds)
            _, err = recorder.communicate(timeout=args.seconds + 60)
            if recorder.returncode != 0 or not raw.exists():
                print(f"py-spy failed: {err.decode(errors='replace')}", file=sys.stderr)
                return 1
        finally:
            gateway.stop()
            mock.stop()
        if args.out:
            shutil.copy(raw, args.out)
        counts, total = self_times(raw)
    print(
        f"hotpath serve, 1 worker, cache {'misses' if args.miss else 'hits'} under "
        f"wrk -c{args.conns} for {args.seconds:g} s: "
        f"{res.rps:,.0f} req/s while sampled ({res.errors} errors, {res.non2xx} non-2xx); "
        f"second answer {status}, x-hotpath-cache={headers.get('x-hotpath-cache')}; "
        f"{total} samples (py-spy, 250 Hz, idle excluded).\n"
    )
    print("All frames, by self time:\n")
    print("\n".join(_table(counts.most_common(args.top), total)))
    mine = ("hotpath/gateway", "hotpath/cache", "hotpath/providers", "hotpath/traffic", "uvicorn")
    ours = [(f, n) for f, n in counts.most_common() if f.split("(")[-1].startswith(mine)]
    print("\nhotpath and uvicorn frames only, by self time:\n")
    print("\n".join(_table(ours[: args.top], total)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
