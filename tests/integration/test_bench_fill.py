"""The benchmark's fill leaves the data layout an increment through the service leaves."""

from __future__ import annotations

import uuid

import redis

from benchmarks.fill import fill, members
from service import keys


def test_filled_counters_hold_one_with_a_dirty_mark_in_their_bucket(redis_single_url: str) -> None:
    client = redis.Redis.from_url(redis_single_url, decode_responses=True)
    port = int(client.connection_pool.connection_kwargs["port"])
    tenant, n_buckets = f"t{uuid.uuid4().hex[:8]}", 64
    result = fill([("127.0.0.1", port)], lambda b: 0, n_buckets, members(tenant, "c-", 300))
    assert (result.counters, result.complete) == (300, True)
    for name in ("c-0", "c-150", "c-299"):
        bk = keys.bucket_keys(keys.bucket_of(tenant, name, n_buckets))
        member = keys.member(tenant, name)
        assert client.hget(bk.values, member) == "1"
        assert client.zscore(bk.dirty, member) is not None
        assert not client.hexists(bk.epochs, member)


def test_a_fill_stops_at_its_deadline_and_says_so(redis_single_url: str) -> None:
    client = redis.Redis.from_url(redis_single_url)
    port = int(client.connection_pool.connection_kwargs["port"])
    names = members(f"t{uuid.uuid4().hex[:8]}", "c-", 50_000)
    result = fill([("127.0.0.1", port)], lambda b: 0, 64, names, deadline_s=0.0)
    assert not result.complete
    assert 0 < result.counters < 50_000
