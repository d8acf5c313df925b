"""Redis memory per counter: ``used_memory`` summed over the masters, before and after.

Counters are created with the service's own increment script, key names and
bucket hash, pipelined per node (``fill.py``). Two sizes:

- **100,000 counters** on the run's own cluster, where the flusher runs: bytes
  with dirty marks, then once the flusher has cleared them (the goal's number).
  At ~24 counters per bucket every bucket's hash is a compact listpack.
- **10,000,000 counters** (full profile only) on a throwaway 3-master cluster of
  its own, so the flusher is not asked to write ten million rows: bytes with
  dirty marks, then after deleting the dirty-mark zsets, which is the state a
  completed flush leaves (``clear_dirty.lua`` removes every mark it flushed).
  Past ``hash-max-listpack-entries`` fields a bucket's hash becomes a
  hashtable: at 4,096 buckets and a limit of 512 that starts near 2.1 million
  counters, so this row shows the cost at scale. Then again with the bucket
  count docs/deploying.md advises for ten million counters (``sized_buckets``),
  the goal's number. The fill stops at its deadline; a partial fill is reported
  as such and judges no goal.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg
from redis.cluster import ClusterNode, RedisCluster

from benchmarks.fill import fill, members
from devstack import RedisCluster as ThrowawayCluster
from service import keys
from service.settings import Settings

SCALE_PREFIX = "big-"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def connect(nodes: str) -> Any:
    pairs = (n.rsplit(":", 1) for n in nodes.split(","))
    startup = [ClusterNode(h, int(p)) for h, p in pairs]  # type: ignore[no-untyped-call]
    return RedisCluster(startup_nodes=startup)


def _used_memory(client: Any) -> int:
    return sum(
        int(client.get_redis_connection(node).info("memory")["used_memory"])
        for node in client.get_primaries()
    )


def _dirty_keys_by_node(client: Any, n_buckets: int) -> dict[Any, list[str]]:
    by_node: dict[Any, list[str]] = defaultdict(list)
    for b in range(n_buckets):
        key = keys.bucket_keys(b).dirty
        by_node[client.get_node_from_key(key)].append(key)
    return by_node


def _dirty_total(client: Any, n_buckets: int) -> int:
    total = 0
    for node, names in _dirty_keys_by_node(client, n_buckets).items():
        pipe = client.get_redis_connection(node).pipeline(transaction=False)
        for name in names:
            pipe.zcard(name)
        total += sum(pipe.execute())
    return total


def _clear_dirty(client: Any, n_buckets: int) -> None:
    """What a completed flush leaves: no dirty marks (an emptied zset key is gone)."""
    for node, names in _dirty_keys_by_node(client, n_buckets).items():
        pipe = client.get_redis_connection(node).pipeline(transaction=False)
        for name in names:
            pipe.delete(name)
        pipe.execute()


def _create(
    client: Any, tenant: str, prefix: str, n: int, n_buckets: int, deadline_s: float
) -> tuple[int, bool, float]:
    """incr.lua once per new counter, pipelined per primary; (made, complete, seconds)."""
    primaries = client.get_primaries()
    index = {node.name: i for i, node in enumerate(primaries)}
    owner = [
        index[client.get_node_from_key(keys.bucket_keys(b).values).name] for b in range(n_buckets)
    ]
    nodes = [(node.host, int(node.port)) for node in primaries]
    r = fill(nodes, owner.__getitem__, n_buckets, members(tenant, prefix, n), deadline_s)
    return r.counters, r.complete, r.seconds


def _listpack_limit(client: Any) -> int:
    node = client.get_primaries()[0]
    cfg = client.get_redis_connection(node).config_get("hash-max-listpack-entries")
    return int(cfg["hash-max-listpack-entries"])


def _sample(client: Any, tenant: str, name: str, n_buckets: int) -> dict[str, Any]:
    bk = keys.bucket_keys(keys.bucket_of(tenant, name, n_buckets))
    return {
        "fields_in_sample_bucket": client.hlen(bk.values),
        "hash_encoding": _text(client.object("encoding", bk.values)),
    }


def _spread(
    client: Any, tenant: str, n: int, n_buckets: int, flusher: bool, wait_s: float
) -> dict[str, Any]:
    before = _used_memory(client)
    made, _, seconds = _create(client, tenant, "mem-", n, n_buckets, float("inf"))
    after = _used_memory(client)
    out: dict[str, Any] = {
        "counters": made,
        **_sample(client, tenant, "mem-0", n_buckets),
        "bytes_per_counter_dirty": round((after - before) / made, 1),
        "fill_s": seconds,
    }
    if flusher:
        deadline = time.monotonic() + wait_s
        while _dirty_total(client, n_buckets) and time.monotonic() < deadline:
            time.sleep(0.25)
        out["dirty_left_after_flush"] = _dirty_total(client, n_buckets)
        out["bytes_per_counter_flushed"] = round((_used_memory(client) - before) / made, 1)
    return out


def scale(workdir: Path, tenant: str, n: int, n_buckets: int, deadline_s: float) -> dict[str, Any]:
    """``n`` counters on a throwaway 3-master cluster, bounded by ``deadline_s`` of filling."""
    cluster = ThrowawayCluster(workdir / f"redis-scale-{n_buckets}", masters=3)
    try:
        client = connect(cluster.start())
        try:
            before = _used_memory(client)
            made, complete, seconds = _create(
                client, tenant, SCALE_PREFIX, n, n_buckets, deadline_s
            )
            dirty = _used_memory(client)
            _clear_dirty(client, n_buckets)
            flushed = _used_memory(client)
            return {
                "counters": made,
                "target_counters": n,
                "complete": complete,
                "fill_s": seconds,
                **_sample(client, tenant, f"{SCALE_PREFIX}0", n_buckets),
                "bytes_per_counter_dirty": round((dirty - before) / max(made, 1), 1),
                "bytes_per_counter_flushed": round((flushed - before) / max(made, 1), 1),
            }
        finally:
            client.close()
    finally:
        cluster.stop()


def measure(
    nodes: str,
    dsn: str,
    tenant: str,
    n: int,
    flusher: bool,
    flush_interval: float,
    scale_counters: int = 0,
    scale_deadline_s: float = 600.0,
    workdir: Path | None = None,
    sized_buckets: int = 0,
) -> dict[str, Any]:
    """Bytes per counter at ``n`` counters (the goal's number) and, when asked, at scale:
    with the run's bucket count, and with ``sized_buckets`` (the count docs/deploying.md
    advises for that many counters) under ``scale_sized_*``."""
    settings = Settings.from_env({"COUNTER_REDIS_NODES": nodes, "COUNTER_PG_DSN": dsn})
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'buckets'").fetchone()
    n_buckets = int(row[0]) if row else settings.buckets
    client = connect(nodes)
    try:
        wait_s = max(30.0, 20 * flush_interval)
        spread = _spread(client, tenant, n, n_buckets, flusher, wait_s)
        out = {"buckets": n_buckets, "hash_max_listpack_entries": _listpack_limit(client), **spread}
    finally:
        client.close()
    if scale_counters and workdir is not None:
        big = scale(workdir, tenant, scale_counters, n_buckets, scale_deadline_s)
        out |= {f"scale_{k}": v for k, v in big.items()}
        if sized_buckets and sized_buckets != n_buckets:
            sized = scale(workdir, tenant, scale_counters, sized_buckets, scale_deadline_s)
            out |= {"scale_sized_buckets": sized_buckets}
            out |= {f"scale_sized_{k}": v for k, v in sized.items()}
    return out
