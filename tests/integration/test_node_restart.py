"""A Redis master killed and restarted empty: flushed counts survive, only unflushed ones go.

The durability promise end to end, on a cluster of its own (the restart empties a
node): counters on the restarted node continue from PostgreSQL at their next
increment, losing exactly the increments that were not flushed yet; counters on
the other nodes lose nothing; the hot-path client reconnects by itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.crc import key_slot

from devstack import RedisCluster
from service import keys
from service.errors import OutcomeUnknown
from service.flusher.flusher import Flusher
from service.settings import Settings, _parse_nodes
from tests.builders import NewTenant, make_store
from tests.helpers import owner_index

N = 60


def test_a_restarted_empty_master_loses_only_unflushed_increments(
    tmp_path: Path, own_pg_dsn: str, new_tenant: NewTenant
) -> None:
    cluster = RedisCluster(tmp_path / "cluster", masters=3)
    try:
        settings = Settings(pg_dsn=own_pg_dsn, redis_nodes=_parse_nodes(cluster.start()))
        store = make_store(settings)
        tenant, _ = new_tenant()
        names = [f"n{i}" for i in range(N)]
        for _ in range(3):
            for ns in names:
                store.increment(tenant, ns)
        flusher = Flusher(settings)
        flusher.flush_all(wait=True)  # 3 of each is durable now
        for ns in names:
            assert store.increment(tenant, ns) == 4  # acknowledged, not flushed

        lost = {ns for ns in names if owner_index(cluster, settings, tenant, ns) == 0}
        assert 0 < len(lost) < N
        cluster.kill_node(0)
        cluster.restart_node(0)  # same port and cluster config: back as master, empty

        values, unavailable = {}, 0
        for ns in names:
            try:
                values[ns] = store.increment(tenant, ns)
            except OutcomeUnknown:  # the old connection to the restarted node, once
                unavailable += 1
                values[ns] = store.increment(tenant, ns)
        assert unavailable <= 1
        for ns in names:
            # From PostgreSQL's 3 on the restarted node (the 4th was not flushed), else 4 + 1.
            assert values[ns] == (4 if ns in lost else 5), ns
        flusher.flush_all(wait=True)
        flusher.close()
        store.close()
    finally:
        cluster.stop()


def test_after_a_master_dies_and_its_slot_moves_the_next_call_finds_the_new_owner(
    tmp_path: Path, own_pg_dsn: str, new_tenant: NewTenant
) -> None:
    """As after a failover: the old address refuses connections, the cluster names another
    master for the slot. One request fails with 503 (never re-sent); the next one succeeds."""
    import redis

    cluster = RedisCluster(tmp_path / "cluster", masters=3)
    try:
        settings = Settings(pg_dsn=own_pg_dsn, redis_nodes=_parse_nodes(cluster.start()))
        store = make_store(settings)
        tenant, _ = new_tenant()
        ns = next(
            f"n{i}" for i in range(100) if owner_index(cluster, settings, tenant, f"n{i}") == 0
        )
        assert store.increment(tenant, ns) == 1
        Flusher(settings).flush_all(wait=True)

        slot = key_slot(
            keys.bucket_keys(keys.bucket_of(tenant, ns, settings.buckets)).values.encode()
        )
        cluster.kill_node(0)
        survivors = [redis.Redis(host=h, port=p) for h, p in cluster.nodes[1:]]
        new_owner = survivors[0].execute_command("CLUSTER", "MYID")
        for node in survivors:
            node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", new_owner)

        with pytest.raises(OutcomeUnknown):
            store.increment(tenant, ns)  # the dead address: outcome unknown, not re-sent
        assert store.increment(tenant, ns) == 2  # new owner, hydrated from PostgreSQL's 1
        store.close()
    finally:
        cluster.stop()
