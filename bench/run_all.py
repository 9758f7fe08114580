"""``make bench``: run every benchmark, then rebuild docs/benchmarks.md from their results."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.timing import host_speed, machine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# (module, results file) in the order they appear in docs/benchmarks.md
BENCHES = [
    ("bench.memory_speed", "memory_speed.md"),
    ("bench.cache_speed", "cache_speed.md"),
    ("bench.redis_tier", "redis_tier.md"),
    ("bench.sqlite_tier", "sqlite_tier.md"),
    ("bench.coherence", "coherence.md"),
    ("bench.hit_ratio", "hit_ratio.md"),
    ("bench.gateway", "gateway.md"),
    ("bench.gateway_choices", "gateway_choices.md"),
    ("bench.traffic_rate_speed", "traffic_rate_speed.md"),
    ("bench.traffic_path", "traffic_path.md"),
    ("bench.cost_path", "cost_path.md"),
    ("bench.observe_path", "observe_path.md"),
    ("bench.anomaly", "anomaly.md"),
    ("bench.loadgen_standard", "loadgen.md"),
    ("bench.concurrency_sim", "concurrency_sim.md"),
]


def main() -> int:
    only = set(sys.argv[1:])
    failed = []
    speeds = [host_speed()]
    ran = 0
    for module, _ in BENCHES:
        if only and module.split(".")[-1] not in only:
            continue
        ran += 1
        print(f"== {module}", flush=True)
        if subprocess.run([sys.executable, "-m", module], cwd=ROOT).returncode != 0:
            failed.append(module)
    if ran:
        speeds.append(host_speed())
    parts = [
        "# Benchmarks",
        "",
        "Produced by `make bench` (`python -m bench.run_all`); each section is one script's "
        "output, in `bench/results/`. Every figure is a ratio against a baseline measured in "
        "the same run. These machines are noisy: scripts repeat and take medians.",
        "",
        f"Last assembled {time.strftime('%Y-%m-%d')} on {machine()}.",
        "",
        _speed_line(speeds, ran),
        "",
    ]
    for _, name in BENCHES:
        path = RESULTS / name
        if path.exists():
            text = path.read_text().strip().replace("\n# ", "\n## ")
            parts += ["#" + text if text.startswith("# ") else text, ""]
    (ROOT / "docs" / "benchmarks.md").write_text("\n".join(parts))
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


def _speed_line(speeds: list[tuple[float, float]], ran: int) -> str:
    """The host's plain-Python speed around the runs (see ``host_speed``)."""
    shown = " and ".join(
        f"{get:.0f} ns per `dict.get` hit, {loop:.0f} ns per loop step" for get, loop in speeds
    )
    when = "before and after the scripts ran" if ran else "when assembled (no script ran)"
    return (
        f"Host speed {when}: {shown}. Times from runs on hosts of another speed do not "
        "compare; the ratios against each run's own baseline do."
    )


if __name__ == "__main__":
    sys.exit(main())
