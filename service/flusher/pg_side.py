"""The flusher's PostgreSQL side: one connection, a staging table, COPY, guarded upsert.

One transaction per batch: COPY (text rows built by snapshot.lua) into a TEMP
staging table (created once per connection, emptied by ON COMMIT DELETE ROWS),
then one INSERT … SELECT … ON CONFLICT whose WHERE guard only ever raises
``(epoch, value)``. Replaying a batch (after a crash anywhere) is therefore a
no-op, never a double count.
synchronous_commit is forced on: a mark is cleared only after a durable commit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import psycopg

from service import queries
from service.migrate import recorded

log = logging.getLogger("counter.flusher")
LOCK_CLASS = 0x666C7573  # advisory lock space of flush ownership ("flus"), key = partition
_SQL = queries.load("service.flusher", "flush.sql")  # each statement's why is there
UPSERT_SQL = _SQL["upsert"]  # benchmarks/flush_bench.py times it alone


class Stored(NamedTuple):
    """A counter row as PostgreSQL holds it."""

    bucket: int
    tenant: str
    namespace: str
    epoch: int
    value: int


class Amount(NamedTuple):
    """What settle.lua adds to a counter of an open lineage (see "settle_amounts" in flush.sql)."""

    bucket: int
    tenant: str
    namespace: str
    epoch: int  # the counter's epoch in Redis, which the amount assumes
    new_epoch: int
    amount: int


class FlushDb:
    """Owns the flusher's connection; any error closes it, the next call reconnects."""

    def __init__(self, dsn: str, connect_timeout: float = 5.0, lease: float = 3.0) -> None:
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self.lease = lease  # seconds a partition's holder may go without using its session
        self._conn: psycopg.Connection[Any] | None = None

    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            # Keepalives: a dead server or network must fail a pass, not hang it.
            conn = psycopg.connect(
                self.dsn,
                autocommit=True,
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
                connect_timeout=max(1, int(self.connect_timeout)),
            )
            try:
                conn.execute(_SQL["session_settings"])
                conn.execute(_SQL["create_flush_stage"])
                conn.execute(_SQL["create_settle_stage"])
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def partitions(self) -> int:
        return int(recorded(self.conn(), "partitions") or 1)

    def lock(self, partition: int, wait: bool) -> bool:
        """Take ownership of a partition for this session; ``wait`` blocks (lock_timeout).

        A holder whose session has waited on it for ``lease`` seconds while holding the
        partition (a flusher stopped or hung mid-pass, between statements or mid-COPY;
        "take_over" in flush.sql) is terminated first: its
        session, lock and open transaction end, so it can no longer commit anything.
        """
        conn = self.conn()
        try_sql = _SQL["try_lock"]
        row = conn.execute(try_sql, (LOCK_CLASS, partition)).fetchone()
        if row and row[0]:
            return True
        args = {"cls": LOCK_CLASS, "part": partition, "lease": self.lease}
        stuck = [r[0] for r in conn.execute(_SQL["take_over"], args).fetchall()]
        if stuck:
            log.warning(
                "partition taken over from a stuck flusher",
                extra={"partition": partition, "pids": stuck, "lease_s": self.lease},
            )
            for _ in range(40):  # the terminated backend lets go within milliseconds
                row = conn.execute(try_sql, (LOCK_CLASS, partition)).fetchone()
                if row and row[0]:
                    return True
                time.sleep(0.05)
        if wait:
            conn.execute(_SQL["lock"], (LOCK_CLASS, partition))
            return True
        return False

    def lock_many(self, partitions: Sequence[int]) -> list[int]:
        """``lock`` of several partitions without waiting, all tried in one round trip:
        those now owned. Only a partition another session holds goes on to ``lock``'s
        takeover check, one by one."""
        tried = self.conn().execute(
            _SQL["try_lock_many"], {"cls": LOCK_CLASS, "parts": list(partitions)}
        )
        got = {int(row[0]) for row in tried}
        return [p for p in partitions if p in got or self.lock(p, wait=False)]

    def unlock_many(self, partitions: Sequence[int]) -> None:
        """``unlock`` of several partitions in one round trip."""
        if not partitions or self._conn is None or self._conn.closed:
            return
        try:
            self._conn.execute(_SQL["unlock_many"], {"cls": LOCK_CLASS, "parts": list(partitions)})
        except psycopg.Error:
            self.close()

    def unlock(self, partition: int) -> None:
        """Release ownership; on a broken connection closing it releases the lock too."""
        if self._conn is None or self._conn.closed:
            return
        try:
            self._conn.execute(_SQL["unlock"], (LOCK_CLASS, partition))
        except psycopg.Error:
            self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction on the connection: committed when the block ends."""
        with self.conn().transaction():
            yield

    def upsert(self, rows: bytes, n_rows: int) -> tuple[int, list[Stored]]:
        """Stage and upsert COPY text ``rows`` (inside ``transaction()``): (rows written,
        rows where PostgreSQL is ahead of what was staged)."""
        with self.conn().cursor() as cur:
            with cur.copy(_SQL["copy_flush_stage"]) as copy:
                copy.write(rows)
            cur.execute(_SQL["upsert"])
            written = max(cur.rowcount, 0)
            ahead: list[Stored] = []
            if written < n_rows:  # only then can the guard have skipped a row
                ahead = [Stored(*r) for r in cur.execute(_SQL["ahead"]).fetchall()]
        return written, ahead

    def write(
        self, rows: bytes, n_rows: int, fault: Callable[[str], None] = lambda step: None
    ) -> tuple[int, list[Stored]]:
        """``upsert`` in a transaction of its own (``fault("copy")`` just before the commit)."""
        with self.transaction():
            out = self.upsert(rows, n_rows)
            fault("copy")
        return out

    def read(self, buckets: Sequence[int], tenant: str | None = None) -> list[Stored]:
        """Stored rows of ``buckets`` (of one tenant, if given), for verify."""
        sql, args = _SQL["read_rows"], {"buckets": list(buckets), "tenant": tenant}
        return [Stored(*r) for r in self.conn().execute(sql, args).fetchall()]

    def lineages(self, buckets: Sequence[int]) -> dict[int, list[str]]:
        """The lineages PostgreSQL accepted for each of ``buckets``, oldest first."""
        known: dict[int, list[str]] = {}
        for bucket, lineage in self.conn().execute(_SQL["lineages"], (list(buckets),)):
            known.setdefault(int(bucket), []).append(str(lineage))
        return known

    def accept(self, bucket: int, lineage: str) -> None:
        """Make ``lineage`` the bucket's current one (inside ``transaction()``)."""
        self.conn().execute(_SQL["accept_lineage"], {"bucket": bucket, "lineage": lineage})

    def amounts(self, bases: bytes) -> list[Amount]:
        """For COPY text ``bases`` ("bucket\\ttenant\\tnamespace\\tepoch\\tbase\\n"): what
        PostgreSQL holds beyond each counter's (epoch, base), where it holds more."""
        if not bases:
            return []
        with self.conn().cursor() as cur:
            with cur.copy(_SQL["copy_settle_stage"]) as copy:
                copy.write(bases)
            rows = cur.execute(_SQL["settle_amounts"]).fetchall()
        return [Amount(*row) for row in rows]
