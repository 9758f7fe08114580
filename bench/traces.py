"""Loaders for the access traces in ``/work/shared/data/traces`` (see its README).

Each loader returns the trace as a list of ``str`` keys (the form the cache sees).
Traces are read once per process and memoised.
"""

from __future__ import annotations

import functools
import gzip
import os
import random
from pathlib import Path

__all__ = ["TRACE_DIR", "load", "scan_mix", "zipf"]

TRACE_DIR = Path(os.environ.get("HOTPATH_TRACES", "/work/shared/data/traces"))

#: name -> (file, format)
_FILES = {
    "gli": ("gli.trace.gz", "lirs"),
    "loop": ("loop.trace.gz", "lirs"),
    "multi2": ("multi2.trace.gz", "lirs"),
    "sprite": ("sprite.trace.gz", "lirs"),
    "oltp": ("oltp.gz", "arc"),
}


@functools.cache
def load(name: str) -> list[str]:
    """The keys of trace ``name`` (``gli``, ``loop``, ``multi2``, ``sprite``, ``oltp``) in order."""
    try:
        filename, fmt = _FILES[name]
    except KeyError:
        raise ValueError(f"unknown trace {name!r}; known: {', '.join(_FILES)}") from None
    with gzip.open(TRACE_DIR / filename, "rt") as f:
        if fmt == "lirs":
            return [line.strip() for line in f if line.strip()]
        keys: list[str] = []
        for line in f:
            fields = line.split()
            if len(fields) < 2:
                continue
            start, count = int(fields[0]), int(fields[1])
            keys.extend(str(k) for k in range(start, start + count))
        return keys


def zipf(n: int, alpha: float, universe: int, *, seed: int = 1) -> list[str]:
    """``n`` keys drawn from a Zipf(``alpha``) distribution over ``universe`` keys."""
    rng = random.Random(seed)
    weights = [1.0 / (rank**alpha) for rank in range(1, universe + 1)]
    # Shuffle which key gets which rank so key order says nothing about popularity.
    names = [f"z{i}" for i in range(universe)]
    rng.shuffle(names)
    return rng.choices(names, weights=weights, k=n)


def scan_mix(
    n: int, alpha: float, universe: int, *, scan_every: int, scan_len: int, seed: int = 1
) -> list[str]:
    """A Zipf stream with a one-off scan of ``scan_len`` fresh keys every ``scan_every`` keys."""
    base = zipf(n, alpha, universe, seed=seed)
    out: list[str] = []
    scan_id = 0
    for i, key in enumerate(base):
        if i and i % scan_every == 0:
            out.extend(f"s{scan_id}-{j}" for j in range(scan_len))
            scan_id += 1
        out.append(key)
    return out
