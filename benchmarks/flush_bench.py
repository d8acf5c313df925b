"""Flush benchmark: the COPY + guarded-upsert path against a plain ``executemany`` upsert.

Starts its own throwaway PostgreSQL and Redis (a 3-master cluster, or ``--single``)
with devstack, makes N counters dirty in Redis, then measures in the same run:

1. ``executemany``: the guarded upsert with VALUES, one transaction per batch;
2. COPY: binary COPY into the staging table + INSERT … SELECT (the flusher's SQL);
3. end to end: ``Flusher.flush_all()`` = Redis snapshot → PostgreSQL → clear marks,
   for N new counters (inserts) and again after every counter moved on (updates).

Run: ``.venv/bin/python -m benchmarks.flush_bench [--counters 100000] [--single]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from devstack import PostgresServer, RedisCluster, RedisSingle
from service import keys
from service.flusher.flusher import Flusher
from service.flusher.pg_side import UPSERT_SQL, FlushDb
from service.migrate import migrate
from service.redis_conn import connect
from service.settings import Settings, _parse_nodes

Row = tuple[int, str, str, int, int]  # bucket, tenant, namespace, epoch, value
VALUES_UPSERT = UPSERT_SQL.replace(
    "SELECT bucket, tenant, namespace, epoch, value, now() FROM flush_stage\n"
    "ORDER BY bucket, tenant, namespace",
    "VALUES (%s, %s, %s, %s, %s, now())",
)


def make_dirty(settings: Settings, n: int, value: int) -> list[Row]:
    """Give N counters (100 tenants) ``value`` and a dirty mark, pipelined per node."""
    client, now = connect(settings), int(time.time() * 1000)
    per_bucket: dict[int, dict[str, int]] = {}
    rows: list[Row] = []
    for i in range(n):
        tenant, ns = f"bench{i % 100:03d}", f"counter-{i // 100}"
        bucket = keys.bucket_of(tenant, ns, settings.buckets)
        per_bucket.setdefault(bucket, {})[keys.member(tenant, ns)] = value
        rows.append((bucket, tenant, ns, 0, value))
    groups: dict[Any, list[int]] = {}
    for b in per_bucket:
        node = client
        if settings.cluster:
            node = client.get_redis_connection(client.get_node_from_key(keys.bucket_keys(b).dirty))
        groups.setdefault(node, []).append(b)
    for node, buckets in groups.items():
        pipe = node.pipeline(transaction=False)
        for b in buckets:
            k = keys.bucket_keys(b)
            pipe.hset(k.values, mapping=per_bucket[b])
            pipe.zadd(k.dirty, dict.fromkeys(per_bucket[b], now))
        pipe.execute()
    client.close()
    return sorted(rows)


def truncate(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE counters")


def bench_executemany(dsn: str, rows: list[Row], batch: int) -> float:
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        started = time.perf_counter()
        for i in range(0, len(rows), batch):
            cur.executemany(VALUES_UPSERT, rows[i : i + batch])
            conn.commit()
        return time.perf_counter() - started


def bench_execute_per_row(dsn: str, rows: list[Row], batch: int) -> float:
    """Reference only: one round trip per row (what executemany is without pipeline mode)."""
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        started = time.perf_counter()
        for i in range(0, len(rows), batch):
            for row in rows[i : i + batch]:
                cur.execute(VALUES_UPSERT, row)
            conn.commit()
        return time.perf_counter() - started


def bench_copy(dsn: str, rows: list[Row], batch: int) -> float:
    """The flusher's PostgreSQL step alone, fed the COPY text snapshot.lua would return."""
    texts = [
        (
            "".join("\t".join(map(str, r)) + "\n" for r in rows[i : i + batch]).encode(),
            len(rows[i : i + batch]),
        )
        for i in range(0, len(rows), batch)
    ]
    db = FlushDb(dsn)
    db.conn()
    started = time.perf_counter()
    for text, n in texts:
        db.write(text, n, lambda step: None)
    elapsed = time.perf_counter() - started
    db.close()
    return elapsed


def bench_end_to_end(settings: Settings) -> tuple[float, int, float]:
    """(seconds of one full pass, rows written, seconds of the idle pass that follows)."""
    flusher = Flusher(settings)
    flusher.db.conn()
    flusher.redis_side()
    started = time.perf_counter()
    result = flusher.flush_all()
    elapsed = time.perf_counter() - started
    idle_started = time.perf_counter()
    flusher.flush_all()
    idle = time.perf_counter() - idle_started
    flusher.close()
    return elapsed, result.rows_written, idle


def check(dsn: str, n: int, value: int) -> None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*), min(value), max(value) FROM counters").fetchone()
    if row != (n, value, value):
        sys.exit(f"flush_bench: PostgreSQL holds {row}, expected ({n}, {value}, {value})")


def run(n: int, batch: int, single: bool, base: Path) -> dict[str, float]:
    pg = PostgresServer()
    redis: Any = RedisSingle(base / "redis") if single else RedisCluster(base / "cluster")
    try:
        dsn, started = pg.start(), redis.start()
        settings = (
            Settings(pg_dsn=dsn, redis_url=started, flush_batch=batch)
            if single
            else Settings(pg_dsn=dsn, redis_nodes=_parse_nodes(started), flush_batch=batch)
        )
        migrate(settings)
        rows = make_dirty(settings, n, 1)
        out: dict[str, float] = {"counters": n, "batch": batch}
        out["executemany_s"] = bench_executemany(dsn, rows, batch)
        check(dsn, n, 1)
        truncate(dsn)
        sample = rows[: min(n, 10_000)]
        out["per_row_rows_per_s"] = len(sample) / bench_execute_per_row(dsn, sample, batch)
        truncate(dsn)
        out["copy_s"] = bench_copy(dsn, rows, batch)
        check(dsn, n, 1)
        truncate(dsn)
        out["end_to_end_insert_s"], written, out["idle_pass_s"] = bench_end_to_end(settings)
        check(dsn, n, 1)
        make_dirty(settings, n, 2)
        out["end_to_end_update_s"], written2, _ = bench_end_to_end(settings)
        check(dsn, n, 2)
        if (written, written2) != (n, n):
            sys.exit(f"flush_bench: flusher wrote {written} and {written2} rows, expected {n}")
        return out
    finally:
        redis.stop()
        pg.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counters", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5000, help="COUNTER_FLUSH_BATCH")
    parser.add_argument("--single", action="store_true", help="one Redis node, not a cluster")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flush-bench-") as tmp:
        r = run(args.counters, args.batch, args.single, Path(tmp))
    n = args.counters
    print(
        f"flush_bench: {n} counters, batches of {args.batch}, "
        f"redis {'single node' if args.single else '3-master cluster'}"
    )
    print(
        f"  execute per row      {r['per_row_rows_per_s']:>10,.0f} rows/s  "
        "(reference: one round trip per row, first 10,000 rows)"
    )
    print(
        f"  executemany upsert   {n / r['executemany_s']:>10,.0f} rows/s  "
        f"({r['executemany_s']:.2f} s, psycopg 3 pipeline mode)"
    )
    print(f"  COPY + upsert        {n / r['copy_s']:>10,.0f} rows/s  ({r['copy_s']:.2f} s)")
    print(f"  COPY / executemany   {r['executemany_s'] / r['copy_s']:>10.1f} x")
    for kind in ("insert", "update"):
        t = r[f"end_to_end_{kind}_s"]
        print(
            f"  end to end ({kind}s)  {n / t:>10,.0f} rows/s  ({t:.2f} s: "
            "redis snapshot -> postgres -> clear marks)"
        )
    print(
        f"  idle pass            {r['idle_pass_s'] * 1000:>10.0f} ms      "
        "(nothing dirty: one ZCARD per bucket, 4096 buckets)"
    )
    if args.json:
        args.json.write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
