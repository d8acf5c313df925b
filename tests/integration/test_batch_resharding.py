"""A batch whose node no longer serves one of its buckets (a slot mid-migration): the
node refuses the whole call before counting anything, and the items are sent one by one.

Which of the bucket's keys has moved decides which command of incr_many.lua's first
phase meets the refusal (the lineage GET, HEXISTS, or ZADD after other buckets were
marked), so each is tried."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from redis.crc import key_slot

from service import keys
from service.api.batch import Batches, Item
from service.settings import Settings
from tests.builders import NewTenant, make_store
from tests.flush_helpers import flush, pg_states
from tests.integration.test_resharding import (
    _errors,
    _finish_migration,
    _move_keys,
    _node,
    _open_migration,
    _owner,
    _wait_for_error,
)


@pytest.mark.parametrize("moved", ["values", "dirty", "lineage"])
def test_a_batch_over_a_migrating_slot_counts_every_item_once(
    cluster_settings: Settings, new_tenant: NewTenant, moved: str
) -> None:
    settings = replace(cluster_settings, redis_client="lean")
    store = make_store(settings)
    batches = Batches(store)
    tenant, _ = new_tenant()
    names = [f"m{i}" for i in range(60)]
    batches.increment(tenant, [Item(i, ns, 2) for i, ns in enumerate(names)])
    # The last bucket in the script's order (buckets ascending): every other bucket of
    # its node is checked, and marked, before the refusal.
    moving = max(names, key=lambda ns: keys.bucket_of(tenant, ns, store.n_buckets))
    bucket_keys = keys.bucket_keys(keys.bucket_of(tenant, moving, store.n_buckets))
    slot = key_slot(bucket_keys.values.encode())
    src_addr = _owner(settings, slot)
    dst_addr = next(a for a in settings.redis_nodes if a != src_addr)
    src, dst = _node(src_addr), _node(dst_addr)
    before = _errors(src)["TRYAGAIN"]
    dst_id = _open_migration(src, dst, slot)
    assert src.exists(getattr(bucket_keys, moved))
    _move_keys(src, dst, slot, only=[getattr(bucket_keys, moved)])  # the bucket's keys split
    items = [Item(i, ns, 3) for i, ns in enumerate(names)]
    # The node refuses the group; the moving item, sent alone (incr.lua), gets TRYAGAIN
    # and waits it out: once the source has answered one, the migration is finished.
    with ThreadPoolExecutor(1) as pool:
        during = pool.submit(batches.increment, tenant, items)
        _wait_for_error(src, "TRYAGAIN", before)
        _move_keys(src, dst, slot)
        _finish_migration(settings, slot, dst_id)
        during.result(timeout=30)
    assert [it.result for it in items] == [{"namespace": ns, "value": 5} for ns in names]
    assert [store.get(tenant, ns) for ns in names] == [5] * len(names)
    flush(settings)  # settles the moved bucket's open lineage (see test_resharding)
    flush(settings)
    assert pg_states(settings.pg_dsn, tenant) == dict.fromkeys(names, (0, 5))
    store.close()
