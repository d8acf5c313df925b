"""Redis memory per counter: ``used_memory`` summed over the masters, before and after.

Counters are created with the service's own increment script (``service/lua/incr.lua``),
its key names and bucket hash (``service.keys``), pipelined per cluster node so
100,000 counters take seconds. Each call passes the seed a hydration would
("0", epoch 0), which is what the first increment of a new counter ends up
running; the preceding "needs hydration" probe writes nothing, so it is skipped.
Dirty marks are transient (the flusher clears them), so memory is reported
with them and, when a flusher runs, again once they are flushed.

Two fills, because Redis stores a small hash as a compact listpack and converts
it to a hashtable past ``hash-max-listpack-entries`` fields (read from the
server: 512 for Debian's redis 7.0, 128 upstream): the spread fill (n counters
over all buckets: ~24 per bucket at 100,000 / 4,096) and a dense fill (that
limit + 100 counters in each of 16 buckets), which is what every bucket looks
like beyond limit x buckets counters (~2.1 million at 512 x 4,096).
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import psycopg

from service import keys
from service.redis_conn import connect
from service.scripts import INCR, lua_source
from service.settings import Settings

BATCH = 2000
DENSE_BUCKETS = 16


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _used_memory(client: Any) -> int:
    return sum(
        int(client.get_redis_connection(node).info("memory")["used_memory"])
        for node in client.get_primaries()
    )


def _dirty_total(client: Any, n_buckets: int) -> int:
    by_node: dict[Any, list[str]] = defaultdict(list)
    for b in range(n_buckets):
        key = keys.bucket_keys(b).dirty
        by_node[client.get_node_from_key(key)].append(key)
    total = 0
    for node, names in by_node.items():
        pipe = client.get_redis_connection(node).pipeline(transaction=False)
        for name in names:
            pipe.zcard(name)
        total += sum(pipe.execute())
    return total


def _create(client: Any, tenant: str, names: list[str], n_buckets: int) -> None:
    """Run incr.lua once for each new counter, pipelined per node."""
    by_node: dict[Any, list[tuple[keys.BucketKeys, str]]] = defaultdict(list)
    for namespace in names:
        bk = keys.bucket_keys(keys.bucket_of(tenant, namespace, n_buckets))
        by_node[client.get_node_from_key(bk.values)].append((bk, keys.member(tenant, namespace)))
    now_ms = int(time.time() * 1000)
    for node, items in by_node.items():
        conn = client.get_redis_connection(node)
        script = conn.register_script(lua_source("incr"))
        replid = conn.info("replication")["master_replid"]  # the node's history (incr.lua)
        for start in range(0, len(items), BATCH):
            pipe = conn.pipeline(transaction=False)
            for bk, member in items[start : start + BATCH]:
                script(
                    keys=list(INCR.keys(bk)),
                    args=[member, now_ms, "0", 0, 1, "", 0, replid],
                    client=pipe,
                )
            if any(r != 1 for r in pipe.execute()):
                raise RuntimeError("incr.lua did not create a fresh counter (value != 1)")


def _listpack_limit(client: Any) -> int:
    node = client.get_primaries()[0]
    cfg = client.get_redis_connection(node).config_get("hash-max-listpack-entries")
    return int(cfg["hash-max-listpack-entries"])


def _dense_names(tenant: str, n_buckets: int, per_bucket: int) -> list[str]:
    """Namespaces that put ``per_bucket`` counters in each of buckets 0..15 (found by hashing)."""
    want = min(DENSE_BUCKETS, n_buckets)
    per: dict[int, int] = defaultdict(int)
    names: list[str] = []
    i = 0
    while len(names) < want * per_bucket:
        name = f"dense-{i}"
        i += 1
        b = keys.bucket_of(tenant, name, n_buckets)
        if b < want and per[b] < per_bucket:
            per[b] += 1
            names.append(name)
    return names


class _Phase:
    def __init__(self, client: Any, n_buckets: int, flusher: bool, wait_s: float) -> None:
        self.client, self.n_buckets, self.flusher, self.wait_s = client, n_buckets, flusher, wait_s

    def run(self, label: str, tenant: str, names: list[str]) -> dict[str, Any]:
        before = _used_memory(self.client)
        _create(self.client, tenant, names, self.n_buckets)
        after = _used_memory(self.client)
        sample = keys.bucket_keys(keys.bucket_of(tenant, names[0], self.n_buckets))
        out: dict[str, Any] = {
            "counters": len(names),
            "fields_in_sample_bucket": self.client.hlen(sample.values),
            "hash_encoding": _text(self.client.object("encoding", sample.values)),
            "bytes_per_counter_dirty": round((after - before) / len(names), 1),
        }
        if self.flusher:
            deadline = time.monotonic() + self.wait_s
            while _dirty_total(self.client, self.n_buckets) and time.monotonic() < deadline:
                time.sleep(0.25)
            out["dirty_left_after_flush"] = _dirty_total(self.client, self.n_buckets)
            out["bytes_per_counter_flushed"] = round(
                (_used_memory(self.client) - before) / len(names), 1
            )
        return {f"{label}_{k}" if label else k: v for k, v in out.items()}


def measure(
    nodes: str,
    dsn: str,
    tenant: str,
    n: int,
    flusher: bool,
    flush_interval: float,
    dense: bool = True,
) -> dict[str, Any]:
    """Bytes per counter, spread (the goal's number) and dense, with and without dirty marks."""
    settings = Settings.from_env({"COUNTER_REDIS_NODES": nodes, "COUNTER_PG_DSN": dsn})
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'buckets'").fetchone()
    n_buckets = int(row[0]) if row else settings.buckets
    client = connect(settings)
    try:
        phase = _Phase(client, n_buckets, flusher, max(30.0, 20 * flush_interval))
        spread = phase.run("", tenant, [f"mem-{i}" for i in range(n)])
        limit = _listpack_limit(client)
        out = {"buckets": n_buckets, "hash_max_listpack_entries": limit, **spread}
        if dense:
            out |= phase.run("dense", tenant, _dense_names(tenant, n_buckets, limit + 100))
        return out
    finally:
        client.close()
