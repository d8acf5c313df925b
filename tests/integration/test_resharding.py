"""A slot moving between masters mid-traffic: MOVED and ASK are followed, counts stay exact."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import redis
from redis.crc import key_slot

from service import keys
from service.settings import Settings
from tests.builders import NewTenant, make_store


def _node(addr: tuple[str, int]) -> redis.Redis:
    return redis.Redis(host=addr[0], port=addr[1])


def _owner(settings: Settings, slot: int) -> tuple[str, int]:
    first = _node(settings.redis_nodes[0])
    for start, end, master, *_ in first.execute_command("CLUSTER", "SLOTS"):
        if start <= slot <= end:
            return master[0].decode(), int(master[1])
    raise AssertionError(f"slot {slot} has no owner")


def _start_migration(src: redis.Redis, dst: redis.Redis, slot: int) -> bytes:
    """IMPORTING/MIGRATING, then move every key of the slot: the source now answers ASK."""
    src_id, dst_id = src.execute_command("CLUSTER MYID"), dst.execute_command("CLUSTER MYID")
    dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
    target = dst.connection_pool.connection_kwargs
    host, port = target["host"], target["port"]
    while batch := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
        src.execute_command("MIGRATE", host, port, "", 0, 5000, "KEYS", *batch)
    return dst_id


def _finish_migration(settings: Settings, slot: int, dst_id: bytes) -> None:
    for addr in settings.redis_nodes:
        _node(addr).execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)


def test_increments_follow_a_slot_to_its_new_master(
    cluster_settings: Settings, new_tenant: NewTenant
) -> None:
    # The lean client only: redis-py's own TRYAGAIN budget (~0.2 s) is its business.
    settings = replace(cluster_settings, redis_client="lean")
    store = make_store(settings)
    tenant, _ = new_tenant()
    for _ in range(10):
        store.increment(tenant, "moving")
    bucket = keys.bucket_of(tenant, "moving", store.n_buckets)
    slot = key_slot(keys.bucket_keys(bucket).values.encode())
    src_addr = _owner(settings, slot)
    dst_addr = next(a for a in settings.redis_nodes if a != src_addr)
    src, dst = _node(src_addr), _node(dst_addr)

    dst_id = _start_migration(src, dst, slot)
    assert store.get(tenant, "moving") == 10  # ASK: the source no longer has the key
    # The 3-key script gets TRYAGAIN while the slot is half-moved; it waits, and runs
    # (after MOVED) once the migration is final.
    with ThreadPoolExecutor(1) as pool:
        during = pool.submit(store.increment, tenant, "moving")
        time.sleep(0.15)
        _finish_migration(settings, slot, dst_id)
        assert during.result(timeout=5) == 11
    assert store.increment(tenant, "moving") == 12
    assert store.get(tenant, "moving") == 12
    assert _owner(settings, slot) == dst_addr
    store.close()
