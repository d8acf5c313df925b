"""Shared by the flush tests: counters written as the API would, read back from both stores."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from prometheus_client import REGISTRY

from service import keys
from service.flusher import lineage
from service.flusher.flusher import Flusher
from service.scripts import INCR
from service.settings import Settings
from tests.helpers import node_of

State = tuple[int, int]  # (epoch, value)


def per_node(r: Any, n_buckets: int, tenant: str, namespaces: list[str]) -> dict[Any, list[str]]:
    groups: dict[Any, list[str]] = {}
    for ns in namespaces:
        key = keys.bucket_keys(keys.bucket_of(tenant, ns, n_buckets)).values
        groups.setdefault(node_of(r, key), []).append(ns)
    return groups


def increment(r: Any, n_buckets: int, tenant: str, counts: dict[str, int]) -> None:
    """Run incr.lua ``counts[ns]`` times per counter, pipelined per node. The tenant is new
    (no PostgreSQL rows), so the seed "0" is what hydration would have given."""
    now = int(time.time() * 1000)
    for node, names in per_node(r, n_buckets, tenant, list(counts)).items():
        node.script_load(INCR.source)
        replid = node.info("replication")["master_replid"]  # the node's history (incr.lua)
        pipe = node.pipeline(transaction=False)
        for ns in names:
            script_keys = INCR.keys(keys.bucket_keys(keys.bucket_of(tenant, ns, n_buckets)))
            for _ in range(counts[ns]):
                member = keys.member(tenant, ns)
                args = (member, now, "0", 0, 1, "", 0, replid)  # by 1, no idempotency key
                pipe.evalsha(INCR.sha, len(script_keys), *script_keys, *args)
        pipe.execute()


def redis_states(r: Any, n_buckets: int, tenant: str, namespaces: list[str]) -> dict[str, State]:
    """(epoch, value) in Redis of each counter that exists there."""
    out: dict[str, State] = {}
    for node, names in per_node(r, n_buckets, tenant, namespaces).items():
        pipe = node.pipeline(transaction=False)
        for ns in names:
            k = keys.bucket_keys(keys.bucket_of(tenant, ns, n_buckets))
            member = keys.member(tenant, ns)
            pipe.hget(k.values, member).hget(k.epochs, member)
        res = pipe.execute()
        for i, ns in enumerate(names):
            if res[2 * i] is not None:
                out[ns] = (int(res[2 * i + 1] or 0), int(res[2 * i]))
    return out


def dirty_names(r: Any, n_buckets: int, tenant: str, namespaces: list[str]) -> set[str]:
    found = set()
    for node, names in per_node(r, n_buckets, tenant, namespaces).items():
        pipe = node.pipeline(transaction=False)
        for ns in names:
            dirty = keys.bucket_keys(keys.bucket_of(tenant, ns, n_buckets)).dirty
            pipe.zscore(dirty, keys.member(tenant, ns))
        found |= {ns for ns, score in zip(names, pipe.execute(), strict=True) if score is not None}
    return found


def pg_states(dsn: str, tenant: str) -> dict[str, State]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT namespace, epoch, value FROM counters WHERE tenant = %s", (tenant,)
        ).fetchall()
    return {ns: (epoch, value) for ns, epoch, value in rows}


def in_open_lineages(r: Any, n_buckets: int, tenant: str, namespaces: list[str]) -> set[str]:
    """The namespaces whose bucket's lineage is open: a node began it over values it
    already held (earlier tests reshard and promote on these servers, and the first
    increment after that opens it). A pass settles such a bucket and writes its
    counters on the next pass (service/flusher/lineage.py)."""
    found = set()
    for node, names in per_node(r, n_buckets, tenant, namespaces).items():
        pipe = node.pipeline(transaction=False)
        for ns in names:
            pipe.get(keys.bucket_keys(keys.bucket_of(tenant, ns, n_buckets)).lineage)
        for ns, raw in zip(names, pipe.execute(), strict=True):
            text = raw.decode() if isinstance(raw, bytes) else (raw or "")
            if lineage.parse(text)[1] == "o":
                found.add(ns)
    return found


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def flush(settings: Settings, **kwargs: Any) -> Any:
    """One pass by a fresh flusher, as a separate process or ``counterctl flush --once`` would."""
    f = Flusher(settings, **kwargs)
    try:
        return f.flush_all(wait=True)
    finally:
        f.close()


class Crash(Exception):
    """Raised by a fault hook: the flusher dies at that step."""


def same_bucket_names(tenant: str, n_buckets: int, count: int) -> list[str]:
    by_bucket: dict[int, list[str]] = {}
    for i in range(200_000):
        names = by_bucket.setdefault(keys.bucket_of(tenant, f"s{i}", n_buckets), [])
        names.append(f"s{i}")
        if len(names) == count:
            return names
    raise AssertionError("no bucket filled")
