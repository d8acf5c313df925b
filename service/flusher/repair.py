"""Repair adds, never overwrites: settle open lineages, reopen buckets that fell behind.

A new lineage (a promoted replica, a restart: see ``service.flusher.lineage``) may
lack acknowledged increments that PostgreSQL already holds. Settling adds to each
counter what PostgreSQL holds beyond the value it had when the lineage began, so
the increments acknowledged since then are kept (overwriting with PostgreSQL's
value, as this code once did, erased them). A bucket whose Redis values fall
behind PostgreSQL *within* one lineage (an operator's edit, an old snapshot
restored) is reopened: a new lineage, which the next pass settles the same way.
Both the flusher and ``counterctl verify --repair`` use this.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from service import keys
from service.flusher.metrics import REPAIRED, REPAIRS
from service.flusher.pg_side import Amount, Stored
from service.flusher.redis_side import RedisSide, Settlement

log = logging.getLogger("counter.repair")


def settle(
    side: RedisSide,
    lineages: Mapping[int, str],
    amounts: Sequence[Amount],
) -> tuple[int, int]:
    """Apply ``amounts`` and close each bucket's lineage; ``(counters raised, increments
    added)``."""
    if not lineages:
        return 0, 0
    per_bucket: dict[int, list[Settlement]] = {b: [] for b in lineages}
    for a in amounts:
        member = keys.member(a.tenant, a.namespace)
        per_bucket[a.bucket].append((member, a.epoch, a.new_epoch, a.amount))
    items = [(b, lineages[b], pairs) for b, pairs in per_bucket.items()]
    added = side.settle(items)
    done = [(item, n) for item, n in zip(items, added, strict=True) if n >= 0]
    raised = sum(len(item[2]) for item, _ in done)
    total = sum(n for _, n in done)
    if raised:
        REPAIRS.inc(raised)
        REPAIRED.inc(total)
        log.warning(
            "a new lineage lacked increments postgresql holds: added them",
            extra={
                "buckets": len(done),
                "counters": raised,
                "increments_added": total,
                "examples": [f"{m}: {a:+}" for item, _ in done for m, _, _, a in item[2][:3]][:5],
            },
        )
    return raised, total


def reopen_behind(side: RedisSide, behind: Sequence[Stored]) -> int:
    """Open a new lineage on the buckets of counters Redis holds lower than PostgreSQL
    within one lineage; the next flush settles them. Buckets opened."""
    members: dict[int, list[str]] = {}
    for row in behind:
        members.setdefault(row.bucket, []).append(keys.member(row.tenant, row.namespace))
    if not members:
        return 0
    opened = sum(side.reopen(members))
    if opened:
        log.warning(
            "redis was behind postgresql within one lineage: bucket reopened for settling",
            extra={
                "buckets": opened,
                "examples": [f"{keys.member(r.tenant, r.namespace)}" for r in behind[:5]],
            },
        )
    return opened
