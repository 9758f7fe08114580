"""Probabilistic early refresh (XFetch: Vattani, Chierichetti & Lowenstein, 2015).

A hit on a record that expires at ``expiry`` and took ``delta`` seconds to
compute triggers a background reload when::

    now - delta * beta * ln(U)  >=  expiry        with U uniform in (0, 1]

The chance grows smoothly as expiry approaches and is higher for values that
are slow to compute, so a steadily hot key is reloaded before it expires (no
caller waits for the loader) while cold keys just expire. ``beta`` > 1 refreshes
earlier. One refresh per key runs at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from hotpath.cache._record import Record

__all__ = ["should_refresh"]


def should_refresh(record: Record, now: float, beta: float, rand: Callable[[], float]) -> bool:
    expiry = record.expires_at
    if expiry is None or record.delta <= 0.0 or beta <= 0.0:
        return False
    u = rand()
    if u <= 0.0:
        return True
    return now - record.delta * beta * math.log(u) >= expiry
