"""``counterctl rebucket``: a flushed deployment moves to another bucket count, exactly.

On a Redis Cluster and a database of its own (the command empties Redis of bucket
keys and rewrites the counters table): every counter keeps its epoch, value and
times, lands in its bucket under the new count, and the service started with that
count reads and increments each one from where it was.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devstack import RedisCluster
from service import keys
from service.api.idempotency import Idempotency
from service.flusher.plan import partition_ranges
from service.migrate import LayoutMismatch, check_layout, migrate
from service.ops import rebucket as rebucket_module
from service.ops.commands import rebucket_command
from service.ops.rebucket import NotReady, rebucket
from service.redis_conn import connect
from service.settings import Settings, _parse_nodes
from tests import backends
from tests.builders import NewTenant, make_store
from tests.flush_helpers import flush

N = 200
TO = 8192


def _rows(dsn: str, tenant: str) -> dict[str, tuple[Any, ...]]:
    """namespace -> (bucket, epoch, value, created_at, updated_at)"""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT namespace, bucket, epoch, value, created_at, updated_at FROM counters"
            " WHERE tenant = %s",
            (tenant,),
        ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def _bucket_keys(settings: Settings) -> list[Any]:
    client: Any = connect(settings)
    try:
        found: list[Any] = []
        for node in client.get_primaries():
            found += client.get_redis_connection(node).keys("c:{*")
        return found
    finally:
        client.close()


@pytest.fixture
def deployment(tmp_path: Path, own_pg_dsn: str) -> Iterator[Settings]:
    """Settings of a 3-master cluster of its own and a fresh database, default count."""
    cluster = RedisCluster(tmp_path / "cluster", masters=3)
    try:
        yield Settings(pg_dsn=own_pg_dsn, redis_nodes=_parse_nodes(cluster.start()))
    finally:
        cluster.stop()


def test_a_flushed_deployment_moves_to_more_buckets_and_counts_on_exactly(
    deployment: Settings, own_pg_dsn: str, new_tenant: NewTenant
) -> None:
    old = deployment
    new = replace(old, buckets=TO)
    tenant, _ = new_tenant()
    names = [f"n{i}" for i in range(N)]
    store = make_store(old)
    expected = {ns: store.increment(tenant, ns, by=i + 1) for i, ns in enumerate(names)}
    expected[names[0]] = store.set(tenant, names[0], 1000)  # epoch 1
    idem = Idempotency(digest="d" * 16, fingerprint="f")
    expected[names[2]] = store.increment(tenant, names[2], idem=idem)  # a record too
    flush(old)
    expected[names[1]] = store.increment(tenant, names[1])  # acknowledged, not flushed

    with pytest.raises(NotReady, match="1 counters are not flushed"):
        rebucket(old, TO)
    assert rebucket_command(old, TO) == 1  # what counterctl answers
    check_layout(old)  # nothing changed
    flush(old)
    store.close()
    before = _rows(own_pg_dsn, tenant)
    assert {ns: (r[1], r[2]) for ns, r in before.items()} == {
        ns: (1 if ns == names[0] else 0, v) for ns, v in expected.items()
    }

    done = rebucket(old, TO)

    assert done.rows == N
    assert done.redis_keys > 0 and _bucket_keys(old) == []
    with psycopg.connect(own_pg_dsn) as conn:  # they named the Redis keys just deleted
        assert conn.execute("SELECT count(*) FROM bucket_lineages").fetchone() == (0,)
    with pytest.raises(LayoutMismatch):
        check_layout(old)
    check_layout(new)
    after = _rows(own_pg_dsn, tenant)
    assert {ns: r[1:] for ns, r in after.items()} == {ns: r[1:] for ns, r in before.items()}
    assert {ns: r[0] for ns, r in after.items()} == {
        ns: keys.bucket_of(tenant, ns, TO) for ns in names
    }
    assert any(after[ns][0] >= 4096 for ns in names)  # buckets the old count lacked
    with psycopg.connect(own_pg_dsn) as conn:
        bounds = conn.execute(
            "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relispartition"
            " AND relkind = 'r' AND relname LIKE 'counters_p%' ORDER BY relname"
        ).fetchall()
    ranges = partition_ranges(TO, 16)
    assert [b[0] for b in bounds] == [f"FOR VALUES FROM ({r.start}) TO ({r.stop})" for r in ranges]

    store = make_store(new)  # the service started with COUNTER_BUCKETS=TO
    try:
        assert {ns: store.get(tenant, ns) for ns in names} == expected
        for ns in names:
            assert store.increment(tenant, ns, by=2) == expected[ns] + 2
    finally:
        store.close()
    flush(new)
    final = _rows(own_pg_dsn, tenant)
    assert {ns: (r[0], r[1], r[2]) for ns, r in final.items()} == {
        ns: (keys.bucket_of(tenant, ns, TO), 1 if ns == names[0] else 0, v + 2)
        for ns, v in expected.items()
    }


def test_an_increment_during_the_rewrite_rolls_postgresql_back(
    deployment: Settings, own_pg_dsn: str, new_tenant: NewTenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service still running: an increment lands while PostgreSQL is being rewritten."""
    settings = deployment
    tenant, _ = new_tenant()
    store = make_store(settings)
    try:
        for i in range(20):
            store.increment(tenant, f"n{i}")
        flush(settings)
        before = _rows(own_pg_dsn, tenant)
        move_rows = rebucket_module._move_rows

        def rewrite_under_traffic(*args: Any) -> int:
            moved = move_rows(*args)
            store.increment(tenant, "n0")
            return moved

        monkeypatch.setattr(rebucket_module, "_move_rows", rewrite_under_traffic)
        with pytest.raises(NotReady, match="while PostgreSQL was rewritten"):
            rebucket(settings, TO)
    finally:
        store.close()
    check_layout(settings)  # the count, the rows and their buckets: all as before
    assert _rows(own_pg_dsn, tenant) == before
    flush(settings)
    assert _rows(own_pg_dsn, tenant)["n0"][2] == 2


def test_a_crash_after_redis_was_emptied_leaves_the_old_layout_and_a_rerun_completes(
    deployment: Settings, own_pg_dsn: str, new_tenant: NewTenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/deploying.md: a crash midway leaves the old layout with Redis only emptied."""
    settings = deployment
    tenant, _ = new_tenant()
    names = [f"n{i}" for i in range(20)]
    store = make_store(settings)
    try:
        expected = {ns: store.increment(tenant, ns, by=i + 1) for i, ns in enumerate(names)}
    finally:
        store.close()
    flush(settings)
    before = _rows(own_pg_dsn, tenant)
    delete = rebucket_module._delete_bucket_keys

    def crash_after_deleting(client: Any) -> int:
        delete(client)
        raise RuntimeError("killed before the commit")

    monkeypatch.setattr(rebucket_module, "_delete_bucket_keys", crash_after_deleting)
    with pytest.raises(RuntimeError, match="killed"):
        rebucket(settings, TO)
    assert _bucket_keys(settings) == []
    check_layout(settings)
    assert _rows(own_pg_dsn, tenant) == before
    store = make_store(settings)  # the old count still serves, from PostgreSQL
    try:
        assert {ns: store.get(tenant, ns) for ns in names} == expected
    finally:
        store.close()
    monkeypatch.undo()
    assert rebucket(settings, TO).rows == len(names)  # run again: it completes
    check_layout(replace(settings, buckets=TO))


def test_a_bucket_count_out_of_range_or_unchanged_is_refused_before_any_connection() -> None:
    settings = Settings(pg_dsn="postgresql://unused:1/x", redis_url="redis://unused:1/0")
    for to in (0, keys.MAX_BUCKETS + 1, settings.buckets):
        with pytest.raises(NotReady):
            rebucket(settings, to)


def _make_old(dsn: str) -> None:
    """Give a migrated 4,096-bucket database the bucket columns it had before the cap was
    raised: smallint (repartition.sql, with the old type, under the old settings)."""
    source = resources.files("service.ops").joinpath("repartition.sql").read_text("utf-8")
    old_sql = source.replace("bucket     integer", "bucket     smallint").replace(
        "TYPE integer", "TYPE smallint"
    )
    assert old_sql.count("smallint") == source.count("smallint") + 2
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "SELECT set_config('counter.buckets', '4096', true),"
            " set_config('counter.partitions', '16', true)"
        )
        conn.execute(old_sql.encode())


def _schema(dsn: str) -> dict[str, Any]:
    """What a deployment's bucket tables are: columns, constraints, partitions."""
    with psycopg.connect(dsn) as conn:
        q = conn.execute
        return {
            "columns": q(
                "SELECT attrelid::regclass::text, attname, format_type(atttypid, atttypmod),"
                " attnotnull, pg_get_expr(adbin, adrelid) FROM pg_attribute"
                " LEFT JOIN pg_attrdef ON adrelid = attrelid AND adnum = attnum"
                " WHERE attrelid IN ('counters'::regclass, 'bucket_lineages'::regclass)"
                " AND attnum > 0 AND NOT attisdropped ORDER BY 1, attnum"
            ).fetchall(),
            "constraints": q(
                "SELECT conrelid::regclass::text, contype, pg_get_constraintdef(oid)"
                " FROM pg_constraint WHERE conrelid IN"
                " ('counters'::regclass, 'bucket_lineages'::regclass) ORDER BY 1, 2, 3"
            ).fetchall(),
            "partitions": q(
                "SELECT relname, pg_get_expr(relpartbound, oid), reloptions FROM pg_class"
                " WHERE relispartition AND relkind = 'r' AND relname LIKE 'counters_p%'"
                " ORDER BY relname"
            ).fetchall(),
        }


def test_an_old_database_widens_as_it_moves_past_32767_buckets(
    deployment: Settings, own_pg_dsn: str, new_tenant: NewTenant
) -> None:
    """A smallint database moves to the maximum, 65,536 buckets: its table is made again
    exactly as a new database migrated at that count has it, and counting goes on."""
    _make_old(own_pg_dsn)
    with psycopg.connect(own_pg_dsn) as conn:
        assert conn.execute(
            "SELECT format_type(atttypid, NULL) FROM pg_attribute"
            " WHERE attrelid = 'counters'::regclass AND attname = 'bucket'"
        ).fetchone() == ("smallint",)
    fresh = backends.create_empty_database(own_pg_dsn, f"counter_{uuid.uuid4().hex[:12]}")
    old = deployment
    new = replace(old, buckets=keys.MAX_BUCKETS)
    migrate(replace(new, pg_dsn=fresh))  # a new deployment at the maximum
    tenant, _ = new_tenant()
    names = [f"n{i}" for i in range(100)]
    store = make_store(old)
    try:
        expected = {ns: store.increment(tenant, ns, by=i + 1) for i, ns in enumerate(names)}
    finally:
        store.close()
    flush(old)

    assert rebucket(old, keys.MAX_BUCKETS).rows == len(names)

    assert _schema(own_pg_dsn) == _schema(fresh)
    check_layout(new)
    after = _rows(own_pg_dsn, tenant)
    assert {ns: r[0] for ns, r in after.items()} == {
        ns: keys.bucket_of(tenant, ns, keys.MAX_BUCKETS) for ns in names
    }
    assert any(after[ns][0] > 32767 for ns in names)  # past what smallint holds
    store = make_store(new)
    try:
        for ns in names:
            assert store.increment(tenant, ns) == expected[ns] + 1
    finally:
        store.close()
    flush(new)
    assert {ns: r[2] for ns, r in _rows(own_pg_dsn, tenant).items()} == {
        ns: v + 1 for ns, v in expected.items()
    }
