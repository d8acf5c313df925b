"""A counter missing from Redis continues from its PostgreSQL value, not from 1."""

from __future__ import annotations

from typing import Any

from service import keys
from service.api.store import CounterStore
from tests.builders import NewTenant
from tests.helpers import forget_in_redis, write_pg_row


def test_increment_after_redis_loss_continues_from_postgres(
    store: CounterStore, rclient: Any, pg_dsn: str, new_tenant: NewTenant
) -> None:
    tenant, _ = new_tenant()
    for _ in range(5):
        store.increment(tenant, "views")
    write_pg_row(pg_dsn, store.n_buckets, tenant, "views", 5)  # as if flushed
    forget_in_redis(rclient, store.n_buckets, tenant, "views")
    assert store.get(tenant, "views") == 5  # GET falls back to PostgreSQL
    assert store.increment(tenant, "views") == 6
    assert store.increment(tenant, "views") == 7


def test_a_counter_without_a_row_starts_at_one(store: CounterStore, new_tenant: NewTenant) -> None:
    tenant, _ = new_tenant()
    assert store.increment(tenant, "brand-new") == 1


def test_increment_marks_the_counter_dirty_in_its_bucket(
    store: CounterStore, rclient: Any, new_tenant: NewTenant
) -> None:
    tenant, _ = new_tenant()
    store.increment(tenant, "d")
    bkeys = keys.bucket_keys(keys.bucket_of(tenant, "d", store.n_buckets))
    assert rclient.zscore(bkeys.dirty, keys.member(tenant, "d")) is not None
