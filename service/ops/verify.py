"""``counterctl verify``: compare every counter (or a random sample) in Redis with PostgreSQL.

Findings per counter present in Redis, comparing ``(epoch, value)``:
- equal: fine;
- Redis ahead and marked dirty: *pending* (not flushed yet), fine;
- Redis ahead and not dirty: *unflushed* — a mark was lost, PostgreSQL misses increments;
- PostgreSQL ahead: *postgres-ahead* — Redis lost acknowledged increments.
The last two are differences: the command exits non-zero unless ``--repair`` fixed
them (reopen the bucket's lineage, so the next flush adds what Redis lacks without
erasing newer increments; mark the unflushed counter dirty again).
A counter only in PostgreSQL is fine: the next increment hydrates it.

Reads race with increments and flushes, so each bucket is read in Redis first,
then in PostgreSQL (a clean Redis value must be in PostgreSQL by then), and a
counter that looks behind PostgreSQL is read again in Redis before it is reported.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from service import keys
from service.flusher.pg_side import FlushDb, Stored
from service.flusher.plan import partition_ranges
from service.flusher.redis_side import RedisSide
from service.flusher.repair import reopen_behind

State = tuple[int, int]  # (epoch, value), ordered like the flusher's guard
CHUNK = 256  # buckets per round of reads


def classify(redis: State, pg: State, dirty: bool) -> str | None:
    """None when consistent, else "pending", "unflushed" or "postgres-ahead"."""
    if pg > redis:
        return "postgres-ahead"
    if redis == pg:
        return None
    return "pending" if dirty else "unflushed"


@dataclass
class Finding:
    row: Stored  # the Redis state, with the member's bucket and name
    pg: State
    dirty: bool
    kind: str
    repaired: bool = False


@dataclass
class Report:
    counters: int = 0
    pending: int = 0
    only_in_postgres: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def unrepaired(self) -> list[Finding]:
        return [f for f in self.findings if not f.repaired]


def verify(
    side: RedisSide,
    db: FlushDb,
    n_buckets: int,
    *,
    sample: int | None = None,
    repair: bool = False,
    tenant: str | None = None,
) -> Report:
    """Compare every counter (of ``tenant``), or about ``sample`` of them; repair if asked."""
    report = Report()
    for buckets in _chunks(n_buckets, db, sample):
        redis_rows = in_redis = _redis_rows(side, buckets, tenant)
        if sample is not None and report.counters + len(in_redis) > sample:
            keep = random.sample(sorted(in_redis), sample - report.counters)
            redis_rows = {m: in_redis[m] for m in keep}
        stored = {(r.tenant, r.namespace): r for r in db.read(buckets, tenant)}
        if sample is None:
            report.only_in_postgres += sum(1 for k in stored if k not in in_redis)
        _compare(side, buckets, tenant, redis_rows, stored, report)
        if sample is not None and report.counters >= sample:
            break
    if repair:
        _repair(side, report)
    return report


def _chunks(n_buckets: int, db: FlushDb, sample: int | None) -> Iterator[list[int]]:
    if sample is None:  # partition by partition, so PostgreSQL reads one partition at a time
        for rng in partition_ranges(n_buckets, db.partitions()):
            for i in range(rng.start, rng.stop, CHUNK):
                yield list(range(i, min(i + CHUNK, rng.stop)))
        return
    order = random.sample(range(n_buckets), n_buckets)
    for i in range(0, n_buckets, 16):
        yield order[i : i + 16]


def _redis_rows(
    side: RedisSide, buckets: list[int], tenant: str | None
) -> dict[tuple[str, str], tuple[Stored, bool]]:
    rows: dict[tuple[str, str], tuple[Stored, bool]] = {}
    for b, (values, epochs, dirty) in zip(buckets, side.read_buckets(buckets), strict=True):
        for m, v in values.items():
            t, ns = keys.split_member(m.decode())
            if tenant is None or t == tenant:
                rows[(t, ns)] = (Stored(b, t, ns, int(epochs.get(m, 0)), int(v)), m in dirty)
    return rows


def _compare(
    side: RedisSide,
    buckets: list[int],
    tenant: str | None,
    redis_rows: dict[tuple[str, str], tuple[Stored, bool]],
    stored: dict[tuple[str, str], Stored],
    report: Report,
) -> None:
    suspects: list[Finding] = []
    for key, (row, dirty) in redis_rows.items():
        pg = stored.get(key)
        pg_state = (pg.epoch, pg.value) if pg else (0, 0)
        kind = classify((row.epoch, row.value), pg_state, dirty)
        report.counters += 1
        report.pending += kind == "pending"
        if kind in ("unflushed", "postgres-ahead"):
            suspects.append(Finding(row, pg_state, dirty, kind))
    if any(f.kind == "postgres-ahead" for f in suspects):  # read Redis again: still behind?
        again = _redis_rows(side, sorted({f.row.bucket for f in suspects}), tenant)
        for f in suspects:
            now = again.get((f.row.tenant, f.row.namespace))
            if f.kind == "postgres-ahead" and (
                now is None or classify((now[0].epoch, now[0].value), f.pg, now[1]) != f.kind
            ):
                f.kind = ""  # caught up, or gone (the next increment hydrates it)
    report.findings += [f for f in suspects if f.kind]


def _repair(side: RedisSide, report: Report) -> None:
    behind = [f for f in report.findings if f.kind == "postgres-ahead"]
    targets = [Stored(f.row.bucket, f.row.tenant, f.row.namespace, *f.pg) for f in behind]
    reopen_behind(side, targets)  # a new lineage: the next flush adds what Redis lacks
    for f in behind:
        f.repaired = True  # settled by the next flush pass (or gone: hydrated on next use)
    lost_marks = [f for f in report.findings if f.kind == "unflushed"]
    side.mark_dirty(
        [(f.row.bucket, keys.member(f.row.tenant, f.row.namespace)) for f in lost_marks],
        int(time.time() * 1000),
    )
    for f in lost_marks:
        f.repaired = True
