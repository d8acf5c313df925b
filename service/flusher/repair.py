"""Repair: raise Redis to PostgreSQL's state where Redis holds less, count it, log it once.

Redis can fall behind the durable record when a failover promotes a replica that
missed acknowledged increments, or an operator lowers a value. Raising (never
lowering) restores every count PostgreSQL already holds. Both the flusher (for
each counter it flushes) and ``counterctl verify --repair`` (for any counter) use it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from service import keys
from service.flusher.metrics import REPAIRED, REPAIRS
from service.flusher.pg_side import Stored
from service.flusher.redis_side import RedisSide

log = logging.getLogger("counter.repair")


def raise_to_postgres(side: RedisSide, ahead: Sequence[Stored]) -> list[tuple[Stored, int]]:
    """Raise each counter that is still lower in Redis; ``(row, old Redis value)`` of each."""
    if not ahead:
        return []
    before = side.raise_to(
        [(a.bucket, keys.member(a.tenant, a.namespace), a.epoch, a.value) for a in ahead]
    )
    raised = [(a, old) for a, old in zip(ahead, before, strict=True) if old is not None]
    if raised:
        lost = sum(max(a.value - old, 0) for a, old in raised)
        REPAIRS.inc(len(raised))
        REPAIRED.inc(lost)
        log.warning(
            "redis was behind postgresql: raised to the stored value",
            extra={
                "counters": len(raised),
                "increments_lost_in_redis": lost,
                "examples": [
                    f"{keys.member(a.tenant, a.namespace)}: {old} -> {a.value}"
                    for a, old in raised[:5]
                ],
            },
        )
    return raised
