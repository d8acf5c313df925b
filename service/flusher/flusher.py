"""One flush pass: every dirty counter of every partition this process can own.

Per batch, the protocol of DESIGN §5: snapshot marks, ``(epoch, value)`` and each
bucket's lineage → one PostgreSQL transaction (lineage decisions, COPY + guarded
upsert) → repair by adding (settle open lineages, reopen buckets found behind) →
clear only the marks whose counter still has the flushed state. A crash between
any two steps leaves the marks in place, so a later pass repeats the batch, and
the guarded upsert (and settle.lua's lineage check) makes the repeat a no-op.

Ownership: one flusher at a time per PostgreSQL partition (session advisory lock
``(LOCK_CLASS, partition)``, tried, or awaited by ``counterctl flush --once``),
held from the snapshot until the marks are cleared. A dead flusher's session, and
so its locks, end with it. Flushers start at random partitions and skip held ones.
Partitions are locked in groups of about one batch of dirty counters, in one round
trip (``plan.partition_groups``): a lightly loaded pass is one transaction, not 16.

``fault(step)`` is called after each step ("snapshot", "copy" = before commit,
"commit" = before repair and clearing, "clear"); tests raise there to crash. All of
them are in ``_flush_batch``, which reads as the protocol, step by step.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass

import psycopg
from redis.exceptions import RedisClusterException, RedisError

from service.flusher import lineage, repair
from service.flusher.metrics import BATCH, CLEARED, DIRTY, LAG, ROWS, STALE
from service.flusher.pg_side import FlushDb
from service.flusher.plan import BatchPlanner, Window, partition_groups, partition_ranges
from service.flusher.redis_side import Client, RedisSide
from service.redis_conn import connect
from service.settings import Settings

log = logging.getLogger("counter.flusher")


def backend_of(exc: BaseException) -> str:
    """Which backend an error came from: "postgres", "redis" or "flusher" (anything else)."""
    if isinstance(exc, psycopg.Error):
        return "postgres"
    if isinstance(exc, RedisError | RedisClusterException):
        return "redis"
    return "flusher"


@dataclass
class PassResult:
    counters: int = 0  # dirty counters read from Redis
    rows_written: int = 0  # rows PostgreSQL inserted or raised
    cleared: int = 0  # dirty marks removed
    repaired: int = 0  # counters raised in Redis to PostgreSQL's state
    batches: int = 0
    skipped: int = 0  # partitions owned by another flusher during this pass
    used_pg: bool = False  # PostgreSQL was contacted (an idle pass does not)


class Flusher:
    """Flushes dirty counters; safe to run in several processes at once."""

    def __init__(
        self,
        settings: Settings,
        *,
        redis_factory: Callable[[], Client] | None = None,
        fault: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.db = FlushDb(settings.pg_dsn, lease=settings.flush_lease)
        self._factory = redis_factory or (lambda: connect(settings))
        self._side: RedisSide | None = None
        self._clearer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flush-clear")
        self._ranges: list[range] | None = None
        self.fault = fault or (lambda step: None)

    def close(self) -> None:
        self._clearer.shutdown(wait=True)
        self.db.close()
        self._drop_redis()

    def _drop_redis(self) -> None:
        if self._side is not None:
            self._side.close()
            self._side = None

    def redis_side(self) -> RedisSide:
        if self._side is None:
            self._side = RedisSide(self._factory(), self.settings.buckets)
        return self._side

    def flush_all(self, wait: bool = False) -> PassResult:
        """One pass; ``wait`` blocks on partitions another flusher holds instead of skipping."""
        try:
            return self._pass(wait)
        except BaseException as exc:  # drop the failed connection; the next pass reconnects
            if backend_of(exc) == "postgres":
                self.db.close()
            elif backend_of(exc) == "redis":
                self._drop_redis()
            raise

    def _pass(self, wait: bool) -> PassResult:
        side, result = self.redis_side(), PassResult()
        counts, oldest = side.dirty_heads(range(self.settings.buckets))
        LAG.set(max(0.0, time.time() - oldest / 1000) if oldest is not None else 0.0)
        DIRTY.set(sum(counts.values()))
        if not counts and self._ranges is not None:
            return result
        result.used_pg = True
        if self._ranges is None:
            self._ranges = partition_ranges(self.settings.buckets, self.db.partitions())
        n = len(self._ranges)
        start = random.randrange(n)  # several flushers start on different partitions
        order = [(start + k) % n for k in range(n)]
        dirty = {i: {b: counts[b] for b in self._ranges[i] if b in counts} for i in order}
        sizes = {i: sum(d.values()) for i, d in dirty.items() if d}
        batch = self.settings.flush_batch
        for group in partition_groups([i for i in order if i in sizes], sizes, batch):
            held = self.db.lock_many(group)
            self._flush_locked(side, held, dirty, result)
            for busy in [i for i in group if i not in held]:
                # With ``wait``, a busy partition is awaited alone, holding no other: two
                # flushers waiting for each other's partitions would deadlock.
                if wait and self.db.lock(busy, wait=True):
                    self._flush_locked(side, [busy], dirty, result)
                else:
                    result.skipped += 1
        return result

    def _flush_locked(
        self, side: RedisSide, held: list[int], dirty: dict[int, dict[int, int]], result: PassResult
    ) -> None:
        """Flush the dirty buckets of partitions ``held`` (locked here), then unlock them."""
        if not held:
            return
        try:
            mine = {b: c for i in held for b, c in dirty[i].items()}
            self._flush_owned(side, BatchPlanner(mine, self.settings.flush_batch), result)
        finally:
            self.db.unlock_many(held)

    def _flush_owned(self, side: RedisSide, plan: BatchPlanner, result: PassResult) -> None:
        """Every batch of the partitions just locked, each clear beside the next batch's write.

        PERF: the marks of batch k are cleared (Redis) while batch k+1 is written
        (PostgreSQL). A batch that reads a bucket of the batch still being cleared
        waits for that clear first, so it never reads the marks of the last batch.
        """
        clearing: Future[None] | None = None
        busy: set[int] = set()
        try:
            while windows := plan.next_batch():
                buckets = {w.bucket for w in windows}
                if clearing is not None and busy & buckets:
                    clearing.result()
                batch = self._flush_batch(side, windows, result)
                next(batch)  # steps 1, 2 and 4
                if clearing is not None:
                    clearing.result()
                clearing = self._clearer.submit(_finish, batch)  # step 3, in the background
                busy = buckets
        except BaseException:
            if clearing is not None:
                wait_for([clearing])  # the lock is held until no clear is in flight
            raise
        if clearing is not None:
            clearing.result()

    def _flush_batch(
        self, side: RedisSide, windows: list[Window], result: PassResult
    ) -> Iterator[None]:
        """One batch, DESIGN §5 steps 1-4 in order, with every fault point.

        A generator that pauses once, after the commit and the repair, before the
        marks are cleared: ``_flush_owned`` resumes it beside the next batch's write.
        Run to the end at once, it is the plain sequential protocol.
        """
        # 1. Snapshot the marks and (epoch, value) of each counter, as COPY text, with
        #    each bucket's lineage; the bases of lineages that are open.
        snaps = side.snapshot(windows)
        self.fault("snapshot")
        opened = sorted({s.bucket for s in snaps if lineage.parse(s.lineage)[1] == "o"})
        bases = side.bases(opened) if opened else b""
        # 2. One transaction: the lineage decisions (and what an open lineage lacks),
        #    then COPY into the staging table and the guarded upsert.
        with self.db.transaction():
            plan = lineage.decide(snaps, self.db.lineages(sorted({s.bucket for s in snaps})))
            for bucket, ident in plan.accept.items():
                self.db.accept(bucket, ident)
            amounts = self.db.amounts(_rows_of(bases, plan.settle))
            rows = b"".join(s.rows for s in plan.write)
            n_rows = rows.count(b"\n")
            written, behind = self.db.upsert(rows, n_rows) if rows else (0, [])
            self.fault("copy")
        self.fault("commit")
        # 4. Repair, adding only: settle open lineages; reopen a bucket found behind.
        repaired, _ = repair.settle(side, plan.settle, amounts)
        repair.reopen_behind(side, behind)
        if plan.stale:
            STALE.inc(sum(s.rows.count(b"\n") for s in plan.stale))
            log.warning(
                "rows of a replaced lineage not written (a stale node)",
                extra={"buckets": sorted({s.bucket for s in plan.stale})[:10]},
            )
        BATCH.observe(n_rows)
        ROWS.inc(written)
        result.batches += 1
        result.counters += sum(s.rows.count(b"\n") for s in snaps)
        result.rows_written += written
        result.repaired += repaired
        yield
        # 3. Clear the marks whose counter still holds the state just committed.
        cleared = sum(side.clear(plan.write))
        self.fault("clear")
        CLEARED.inc(cleared)
        result.cleared += cleared
        if invalid := sum(s.invalid for s in snaps):
            log.warning("dirty marks of malformed members dropped", extra={"marks": invalid})


def _rows_of(bases: bytes, buckets: Mapping[int, str]) -> bytes:
    """The lines of COPY text ``bases`` whose bucket (first column) is in ``buckets``."""
    keep = {str(b).encode() for b in buckets}
    return b"".join(
        line + b"\n" for line in bases.split(b"\n") if line and line.split(b"\t", 1)[0] in keep
    )


def _finish(batch: Iterator[None]) -> None:
    """Run a paused ``_flush_batch`` to its end."""
    for _ in batch:
        pass
