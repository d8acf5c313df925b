"""Keys spread over every master, and a bucket's keys share one slot (asked of the cluster)."""

from __future__ import annotations

import redis

from service import keys
from service.settings import Settings
from tests.builders import NewTenant, make_store


def test_counters_spread_over_all_three_masters(
    cluster_settings: Settings, new_tenant: NewTenant
) -> None:
    store = make_store(cluster_settings)
    tenant, _ = new_tenant()
    for i in range(300):
        store.increment(tenant, f"ns-{i}")
    owners = set()
    for host, port in cluster_settings.redis_nodes:
        node = redis.Redis(host=host, port=port, decode_responses=True)
        assert node.info("replication")["role"] == "master"
        mine = [
            k
            for k in node.scan_iter(match="c:*:v", count=1000)
            if any(keys.split_member(str(f))[0] == tenant for f in node.hkeys(k))
        ]
        if mine:
            owners.add(port)
    assert len(cluster_settings.redis_nodes) >= 3
    assert owners == {port for _, port in cluster_settings.redis_nodes}


def test_a_buckets_keys_hash_to_one_slot(cluster_settings: Settings) -> None:
    host, port = cluster_settings.redis_nodes[0]
    node = redis.Redis(host=host, port=port)
    for bucket in (0, 1, 2961, 4095):
        slots = {node.cluster("KEYSLOT", k) for k in keys.bucket_keys(bucket)}
        assert len(slots) == 1
