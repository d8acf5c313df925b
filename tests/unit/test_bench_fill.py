"""The benchmark's fast fill sends exactly the EVALSHA the service would send."""

from __future__ import annotations

from typing import Any

import redis

from benchmarks.fill import Encoder, members
from service import keys


def test_encoded_command_is_redis_pys_evalsha_of_incr_lua_with_a_zero_seed() -> None:
    sha, now, bucket, member = "a" * 40, 1_700_000_000_000, 4095, b"bench/big-7"
    replid = "b" * 40
    k = keys.bucket_keys(bucket)
    conn: Any = redis.Connection()
    expected = b"".join(
        conn.pack_command(
            "EVALSHA",
            sha,
            5,
            k.values,
            k.dirty,
            k.epochs,
            k.lineage,
            k.base,
            member,
            now,
            0,
            0,
            1,
            "",
            0,
            replid,
        )  # fmt: skip
    )
    assert Encoder(sha, now, replid).command(bucket, member) == expected


def test_fill_members_are_distinct_valid_counter_names() -> None:
    names = list(members("bench", "big-", 1000, start=5))
    assert len(set(names)) == 1000
    for name in names:
        tenant, namespace = keys.split_member(name.decode())
        assert tenant == "bench" and keys.is_valid_namespace(namespace)
