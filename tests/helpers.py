"""Small helpers shared by integration tests (real servers only)."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from devstack import RedisCluster
from service import keys
from service.api.keyset import KeySet
from service.apikeys import hash_key
from service.settings import Settings


def redis_fields_of_tenant(r: Any, tenant: str) -> list[str]:
    """Every Redis hash field or zset member that belongs to ``tenant``, on all nodes."""
    found: list[str] = []
    for key in r.scan_iter(match="c:*", count=1000):
        key = key.decode() if isinstance(key, bytes) else key
        if key.rpartition(":")[2] not in ("v", "e", "b", "d"):
            continue  # a lineage or an idempotency record: strings, no members
        members = r.hkeys(key) if not key.endswith(":d") else r.zrange(key, 0, -1)
        found += [m.decode() for m in members if keys.split_member(m.decode())[0] == tenant]
    return found


def write_pg_row(dsn: str, n_buckets: int, tenant: str, namespace: str, value: int) -> None:
    """Store a counter row as the flusher would have (the flusher is a later issue)."""
    bucket = keys.bucket_of(tenant, namespace, n_buckets)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO counters (bucket, tenant, namespace, epoch, value) VALUES (%s,%s,%s,0,%s)"
            " ON CONFLICT (bucket, tenant, namespace) DO UPDATE SET value = EXCLUDED.value",
            (bucket, tenant, namespace, value),
        )


def forget_in_redis(r: Any, n_buckets: int, tenant: str, namespace: str) -> None:
    """Delete a counter's Redis state, as a node restarting empty would."""
    bkeys = keys.bucket_keys(keys.bucket_of(tenant, namespace, n_buckets))
    field = keys.member(tenant, namespace)
    r.hdel(bkeys.values, field)
    r.zrem(bkeys.dirty, field)


def node_of(r: Any, key: str) -> Any:
    """The redis-py client of the node that holds ``key`` (``r`` itself for one node)."""
    if hasattr(r, "get_node_from_key"):
        return r.get_redis_connection(r.get_node_from_key(key))
    return r


BUSY_LUA = """
local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
repeat
  t = redis.call('TIME')
until t[1] * 1000000 + t[2] - start > tonumber(ARGV[1]) * 1000
return 1
"""


def keep_busy(node: Any, ms: int) -> threading.Thread:
    """Run a Lua loop of ``ms`` on ``node``: it answers nobody until the loop ends, then
    runs what waited in its socket buffers. Returns the thread running it (join it)."""
    kw = node.connection_pool.connection_kwargs
    blocker = redis.Redis(host=kw["host"], port=kw["port"], socket_timeout=30)
    thread = threading.Thread(target=blocker.eval, args=(BUSY_LUA, 0, ms))
    thread.start()
    probe = redis.Redis(
        host=kw["host"], port=kw["port"], socket_timeout=0.05, retry=Retry(NoBackoff(), 0)
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # busy once a PING goes unanswered (no sleep guess)
        try:
            probe.ping()
        except redis.TimeoutError:
            break
        time.sleep(0.005)
    else:
        raise AssertionError("the node never became busy")
    probe.close()
    return thread


def owner_index(cluster: RedisCluster, settings: Settings, tenant: str, ns: str) -> int:
    """Index in ``cluster.nodes`` of the master that holds the counter (asked of the cluster)."""
    slot = key_slot(keys.bucket_keys(keys.bucket_of(tenant, ns, settings.buckets)).values.encode())
    host, port = cluster.nodes[0]
    for start, end, master, *_ in redis.Redis(host=host, port=port).cluster("SLOTS"):
        if start <= slot <= end:
            return cluster.nodes.index((master[0].decode(), int(master[1])))
    raise AssertionError(f"slot {slot} unowned")


def wait_for_key(keys: KeySet, key: str, *, present: bool = True, timeout: float = 5.0) -> float:
    """Seconds until ``keys`` holds ``key`` (or, ``present=False``, no longer does)."""
    started = time.monotonic()
    wanted = hash_key(key)
    while ((keys.keys or {}).get(wanted) is not None) != present:
        if time.monotonic() - started > timeout:
            state = "not loaded" if present else "still held"
            raise AssertionError(f"key {state} after {timeout} s")
        time.sleep(0.002)
    return time.monotonic() - started
