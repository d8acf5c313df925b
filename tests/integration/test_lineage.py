"""Bucket lineages end to end: a history that lost acknowledged increments is settled by
adding, never by overwriting; a replaced history is never written; a crash anywhere in
settling repeats it exactly once. Real Redis (cluster and single node), real PostgreSQL,
the API's own clients for the increments.

A promoted replica is simulated in place: the bucket keeps the old master's lineage id
(as replicated) and a value that misses acknowledged increments; the node's own
replication id differs, exactly as after a real promotion (the fault suite does real ones).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from service import keys
from service.api.store import CounterStore
from service.flusher.flusher import Flusher
from service.settings import Settings
from tests.builders import NewTenant
from tests.flush_helpers import (
    Crash,
    dirty_names,
    flush,
    increment,
    metric,
    pg_states,
    redis_states,
)

OLD_MASTER = "0" * 40  # a replication id no test node has


def promote_lossy_replica(r: Any, n_buckets: int, tenant: str, ns: str, value: int) -> None:
    """The bucket as a promoted replica holds it: the old master's lineage, a lower value."""
    k = keys.bucket_keys(keys.bucket_of(tenant, ns, n_buckets))
    r.set(k.lineage, f"{OLD_MASTER}:1:s")
    r.hset(k.values, keys.member(tenant, ns), value)


@pytest.fixture
def flusher(settings: Settings) -> Iterator[Flusher]:
    f = Flusher(settings)
    yield f
    f.close()


def poison_replids(store: Any) -> dict[str, str]:
    """Replace every replication id the client learnt with a wrong one, as after its
    nodes were promoted behind its back; the client's cache, for later checks."""
    transport: Any = store.redis.transport
    known = transport.client._replids if hasattr(transport.client, "_replids") else None
    cache: dict[str, str] = known if known is not None else transport._replids
    assert cache, "the client never learnt a replication id"
    for node in list(cache):
        cache[node] = "f" * 40
    return cache


def test_increments_through_the_api_after_a_lossy_promotion_all_survive(
    settings: Settings, store: CounterStore, rclient: Any, flusher: Flusher, new_tenant: NewTenant
) -> None:
    tenant, _ = new_tenant()
    for _ in range(100):
        store.increment(tenant, "views")
    flusher.flush_all()
    promote_lossy_replica(rclient, settings.buckets, tenant, "views", 95)
    # Acknowledged after the promotion: 96, 97, 98 (values repeat: Redis lost 96-100).
    assert [store.increment(tenant, "views") for _ in range(3)] == [96, 97, 98]
    flusher.flush_all()  # settles: + (100 - 95)
    assert store.get(tenant, "views") == 103
    assert store.increment(tenant, "views") == 104
    flusher.flush_all()
    assert pg_states(settings.pg_dsn, tenant) == {"views": (0, 104)}  # 100 + 3 + 1


def test_a_stale_replication_id_is_corrected_and_the_increment_counts_once(
    settings: Settings, store: CounterStore, rclient: Any, new_tenant: NewTenant
) -> None:
    tenant, _ = new_tenant()
    assert store.increment(tenant, "once") == 1
    cache = poison_replids(store)
    assert store.increment(tenant, "once") == 2  # STALETOKEN: learnt, sent again, once
    assert set(cache.values()) != {"f" * 40}
    assert redis_states(rclient, settings.buckets, tenant, ["once"]) == {"once": (0, 2)}


def test_rows_of_a_replaced_lineage_are_never_written(
    backend: Settings, r: Any, new_tenant: NewTenant
) -> None:
    tenant, _ = new_tenant()
    increment(r, backend.buckets, tenant, {"stale": 5})
    f = Flusher(backend)
    f.flush_all()
    bucket = keys.bucket_of(tenant, "stale", backend.buckets)
    with psycopg.connect(backend.pg_dsn, autocommit=True) as conn:  # a newer history won
        conn.execute(
            "INSERT INTO bucket_lineages (bucket, seq, lineage) SELECT %s, max(seq) + 1, %s"
            " FROM bucket_lineages WHERE bucket = %s",
            (bucket, "f" * 40 + ":9", bucket),
        )
    try:
        increment(r, backend.buckets, tenant, {"stale": 2})  # acknowledged by the stale node
        before = metric("counter_flush_stale_lineage_rows_total")
        f.flush_all()
        f.close()
        assert pg_states(backend.pg_dsn, tenant) == {"stale": (0, 5)}
        assert metric("counter_flush_stale_lineage_rows_total") - before >= 1
        assert dirty_names(r, backend.buckets, tenant, ["stale"]) == {"stale"}  # kept
    finally:  # the bucket is shared with later tests: give it its history back
        with psycopg.connect(backend.pg_dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM bucket_lineages WHERE lineage = %s", ("f" * 40 + ":9",))


@pytest.mark.parametrize("step", ["snapshot", "copy", "commit"])
def test_a_crash_at_any_step_of_settling_then_a_normal_flush_adds_the_loss_once(
    backend: Settings, r: Any, new_tenant: NewTenant, step: str
) -> None:
    tenant, _ = new_tenant()
    increment(r, backend.buckets, tenant, {"views": 10})
    flush(backend)
    promote_lossy_replica(r, backend.buckets, tenant, "views", 4)
    increment(r, backend.buckets, tenant, {"views": 1})  # opens the lineage: base 4, now 5

    def crash(at: str) -> None:
        if at == step:
            raise Crash(at)

    crashing = Flusher(backend, fault=crash)
    with pytest.raises(Crash):
        crashing.flush_all()
    crashing.close()
    flush(backend)  # settles (again, or for the first time): + 6, once
    flush(backend)
    flush(backend)
    assert redis_states(r, backend.buckets, tenant, ["views"]) == {"views": (0, 11)}
    assert pg_states(backend.pg_dsn, tenant) == {"views": (0, 11)}


def test_batch_increments_after_a_lossy_promotion_all_survive(
    settings: Settings, store: CounterStore, rclient: Any, flusher: Flusher, new_tenant: NewTenant
) -> None:
    """incr_many.lua's lineage, as incr.lua's above: the batch opens the new lineage."""
    from service.api.batch import Batches, Item

    tenant, _ = new_tenant()
    batches = Batches(store)
    batches.increment(tenant, [Item(i, "views", 1) for i in range(100)] + [Item(100, "calm", 7)])
    flusher.flush_all()
    promote_lossy_replica(rclient, settings.buckets, tenant, "views", 95)
    items = [Item(0, "views", 1), Item(1, "calm", 1), Item(2, "views", 1), Item(3, "views", 1)]
    batches.increment(tenant, items)
    assert [it.result for it in items] == [
        {"namespace": "views", "value": 96},
        {"namespace": "calm", "value": 8},
        {"namespace": "views", "value": 97},
        {"namespace": "views", "value": 98},
    ]
    flusher.flush_all()  # settles: + (100 - 95)
    assert store.get(tenant, "views") == 103
    last = [Item(0, "views", 1)]
    batches.increment(tenant, last)
    assert last[0].result == {"namespace": "views", "value": 104}
    flusher.flush_all()
    assert pg_states(settings.pg_dsn, tenant) == {"views": (0, 104), "calm": (0, 8)}


def test_a_stale_replication_id_in_a_batch_is_corrected_and_counts_once(
    settings: Settings, store: CounterStore, rclient: Any, new_tenant: NewTenant
) -> None:
    from service.api.batch import Batches, Item

    tenant, _ = new_tenant()
    names = [f"s{i}" for i in range(30)]  # over every node of the cluster
    batches = Batches(store)
    batches.increment(tenant, [Item(i, ns, 1) for i, ns in enumerate(names)])
    cache = poison_replids(store)
    items = [Item(i, ns, 2) for i, ns in enumerate(names)]
    batches.increment(tenant, items)  # STALETOKEN per node: learnt, sent again, once
    assert [it.result for it in items] == [{"namespace": ns, "value": 3} for ns in names]
    assert set(cache.values()) != {"f" * 40}
    assert redis_states(rclient, settings.buckets, tenant, names) == {ns: (0, 3) for ns in names}
