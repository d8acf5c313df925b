"""Percentiles that do not forget the requests that never came back.

A latency distribution made of answered requests only flatters a server that
drops or never answers some: the slowest requests are exactly the missing ones.
Here a *lost* sample (a request that failed or never completed, an increment
never seen in PostgreSQL) counts as slower than every answered one, so a
percentile that falls on one is ``None``: unknown, longer than anything seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

QUANTILES = (50.0, 90.0, 99.0, 99.9)


def percentiles(
    values: Iterable[float],
    lost: int = 0,
    quantiles: Iterable[float] = QUANTILES,
    scale: float = 1.0,
    digits: int = 3,
) -> dict[str, float | None]:
    """Nearest-rank ``p<q>`` for each quantile and ``max``, each times ``scale``, rounded.

    ``lost`` samples rank above all ``values``; a rank among them gives ``None``,
    and so does ``max`` when anything was lost.
    """
    v = sorted(values)
    n = len(v) + max(0, lost)
    out: dict[str, float | None] = {}
    for q in quantiles:
        rank = min(n, max(1, math.ceil(q / 100 * n)))  # 1-based nearest rank
        out[f"p{q:g}"] = round(v[rank - 1] * scale, digits) if 0 < rank <= len(v) else None
    out["max"] = round(v[-1] * scale, digits) if v and lost <= 0 else None
    return out
