"""A batch whose node no longer serves one of its buckets (a slot mid-migration): the
node refuses the whole call before writing, and the items are sent one by one."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from redis.crc import key_slot

from service import keys
from service.api.batch import Batches, Item
from service.settings import Settings
from tests.builders import NewTenant, make_store
from tests.integration.test_resharding import (
    _finish_migration,
    _node,
    _owner,
    _start_migration,
)


def test_a_batch_over_a_migrating_slot_counts_every_item_once(
    cluster_settings: Settings, new_tenant: NewTenant
) -> None:
    settings = replace(cluster_settings, redis_client="lean")
    store = make_store(settings)
    batches = Batches(store)
    tenant, _ = new_tenant()
    names = [f"m{i}" for i in range(60)]
    batches.increment(tenant, [Item(i, ns, 2) for i, ns in enumerate(names)])
    moving = names[0]
    slot = key_slot(
        keys.bucket_keys(keys.bucket_of(tenant, moving, store.n_buckets)).values.encode()
    )
    src_addr = _owner(settings, slot)
    dst_addr = next(a for a in settings.redis_nodes if a != src_addr)
    dst_id = _start_migration(_node(src_addr), _node(dst_addr), slot)
    items = [Item(i, ns, 3) for i, ns in enumerate(names)]
    # As in test_resharding: incr.lua waits out TRYAGAIN on the half-moved slot, and
    # runs once the migration is final.
    with ThreadPoolExecutor(1) as pool:
        during = pool.submit(batches.increment, tenant, items)
        time.sleep(0.15)
        _finish_migration(settings, slot, dst_id)
        during.result(timeout=10)
    assert [it.result for it in items] == [{"namespace": ns, "value": 5} for ns in names]
    assert [store.get(tenant, ns) for ns in names] == [5] * len(names)
    store.close()
