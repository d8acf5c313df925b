"""``counterctl rebucket --to N``: move a stopped deployment to another bucket count.

The bucket count decides where a counter lives (``service.keys``): its Redis keys and
its PostgreSQL partition. A deployment that grows past what its count keeps compact
(docs/deploying.md) moves to a larger one with this, in a maintenance window:

1. The API and the flushers are stopped, and ``counterctl flush --once`` has left
   no dirty mark: PostgreSQL then holds every acknowledged increment.
2. One PostgreSQL transaction gives every row its bucket under the new count, makes
   the partitions again for it, forgets the bucket lineages (they describe Redis
   keys that are about to go) and records the new count in ``meta``.
3. Before that transaction commits, every bucket key in Redis is deleted. The
   service, started with the new ``COUNTER_BUCKETS``, reads each counter from
   PostgreSQL on its first use (hydration), as after any loss of Redis data.

A crash at any point leaves a consistent state: before the commit PostgreSQL still
has the old layout, and an emptied Redis is only a cold cache of it; after the
commit, the new one. Idempotency records live in the buckets' slots and go with
them (docs/deploying.md).

Guards, not a substitute for stopping the service: the command refuses while any
dirty mark exists, and looks again just before the deletion and after it; a mark
found then (increments arriving: the service is running) rolls PostgreSQL back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

from service import keys, queries
from service.flusher.redis_side import RedisSide
from service.migrate import LOCK_ID, recorded, set_layout
from service.redis_conn import connect
from service.settings import Settings

log = logging.getLogger("counter.rebucket")
_SQL = queries.load("service.ops", "rebucket.sql")
NAMES_PER_FETCH = 50_000  # rows of (tenant, namespace) given their new bucket at a time
SCAN_COUNT = 1_000
BUCKET_KEYS = "c:{*"  # every key of a bucket: service.keys (values, marks, records, ...)


class NotReady(ValueError):
    """The deployment is not in a state to rebucket; the message says what to do."""


@dataclass
class Rebucketed:
    rows: int  # PostgreSQL rows given their new bucket
    redis_keys: int  # bucket keys deleted from Redis


def rebucket(settings: Settings, to: int) -> Rebucketed:
    """Move the deployment configured by ``settings`` (the current count) to ``to`` buckets."""
    if not 1 <= to <= keys.MAX_BUCKETS:
        raise NotReady(f"--to must be between 1 and {keys.MAX_BUCKETS}")
    if to == settings.buckets:
        raise NotReady(f"the deployment already has {to} buckets")
    side = RedisSide(connect(settings), settings.buckets)
    try:
        _refuse_dirty(side, settings.buckets, "before")
        with psycopg.connect(settings.pg_dsn) as conn:  # one transaction, committed at the end
            conn.execute(_SQL["exclusive"], (LOCK_ID,))
            conn.execute(_SQL["lock_timeout"])
            conn.execute(_SQL["lock_counters"])
            rows = _move_rows(conn, settings.buckets, to)
            _refuse_dirty(side, settings.buckets, "while PostgreSQL was rewritten")
            deleted = _delete_bucket_keys(side.client)
            _refuse_dirty(side, settings.buckets, "while Redis was emptied")
        log.info("rebucketed", extra={"from": settings.buckets, "to": to, "rows": rows})
        return Rebucketed(rows, deleted)
    finally:
        side.close()


def _refuse_dirty(side: RedisSide, n_buckets: int, when: str) -> None:
    counts, _ = side.dirty_heads(range(n_buckets))
    if dirty := sum(counts.values()):
        raise NotReady(
            f"{dirty} counters are not flushed ({when}): stop the API, run "
            "`counterctl flush --once`, stop the flushers, then run this again"
            + ("" if when == "before" else "; PostgreSQL was left unchanged")
        )


def _move_rows(conn: psycopg.Connection[Any], old: int, to: int) -> int:
    """Every row to its bucket under ``to``, in new partitions (inside the transaction)."""
    buckets = recorded(conn, "buckets")
    if buckets is None or int(buckets) != old:
        raise NotReady(f"PostgreSQL records {buckets} buckets, not {old}")
    columns = [str(r[0]) for r in conn.execute(_SQL["columns"])]
    kept = sql.SQL(", ").join(map(sql.Identifier, columns))
    conn.execute(sql.SQL(_SQL["copy_rows_out"]).format(kept))
    conn.execute(_SQL["create_new_buckets"])
    with conn.cursor(name="rebucket_names") as names:
        names.execute(_SQL["names"])
        while batch := names.fetchmany(NAMES_PER_FETCH):
            with conn.cursor().copy(_SQL["copy_new_buckets"]) as copy:
                for tenant, namespace in batch:
                    copy.write_row((tenant, namespace, keys.bucket_of(tenant, namespace, to)))
    set_layout(conn, to, recorded(conn, "partitions") or "1")  # what repartition.sql reads
    conn.execute(_SQL["forget_lineages"])
    conn.execute(resources.files("service.ops").joinpath("repartition.sql").read_bytes())
    moved = conn.execute(
        sql.SQL(_SQL["copy_rows_back"]).format(
            cols=kept,
            src=sql.SQL(", ").join(sql.Identifier("r", c) for c in columns),
        )
    ).rowcount
    before = conn.execute(_SQL["count_rows"]).fetchone()
    if before is None or moved != before[0]:
        raise RuntimeError(f"rebucket moved {moved} rows of {before}: rolled back")
    conn.execute(_SQL["record_buckets"], (str(to),))
    return moved


def _delete_bucket_keys(client: Any) -> int:
    """UNLINK every bucket key on every master, one key per command (keys of one node
    may lie in several slots, and a multi-key command must stay in one)."""
    nodes = (
        [client.get_redis_connection(n) for n in client.get_primaries()]
        if hasattr(client, "get_primaries")
        else [client]
    )
    deleted = 0
    for node in nodes:
        cursor = 0
        while True:
            cursor, found = node.scan(cursor, match=BUCKET_KEYS, count=SCAN_COUNT)
            if found:
                pipe = node.pipeline(transaction=False)
                for key in found:
                    pipe.unlink(key)
                deleted += sum(pipe.execute())
            if cursor == 0:
                break
    return deleted
