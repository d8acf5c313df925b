"""The write-behind flush (DESIGN §5) against real Redis (cluster and single node) and PostgreSQL.

The helpers at the top are shared by the other flush test modules.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from service import keys
from service.flusher import redis_side
from service.flusher.backoff import BackendStatus
from service.flusher.flusher import Flusher
from service.flusher.loop import attempt
from service.flusher.pg_side import LOCK_CLASS
from service.flusher.plan import partition_ranges
from service.redis_conn import connect
from service.settings import Settings
from tests.builders import NewTenant, backend_settings, make_store
from tests.flush_helpers import (
    Crash,
    dirty_names,
    flush,
    in_open_lineages,
    increment,
    metric,
    pg_states,
    redis_states,
    same_bucket_names,
)

# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def flusher(backend: Settings) -> Iterator[Flusher]:
    f = Flusher(backend)
    yield f
    f.close()


# -- tests ----------------------------------------------------------------------------------


def test_10000_counters_over_all_partitions_land_in_postgres_exactly(
    backend: Settings, r: Any, flusher: Flusher, pg_dsn: str, new_tenant: NewTenant
) -> None:
    tenant, _ = new_tenant()
    counts = {f"c{i}": 1 + (i % 7 == 0) * (i % 5) for i in range(10_000)}
    increment(r, backend.buckets, tenant, counts)
    written = flusher.flush_all().rows_written
    # A bucket whose lineage is open (earlier tests reshard and promote on these servers)
    # is settled first and written on the next pass; nothing else should be left.
    written += flusher.flush_all().rows_written
    assert written >= 10_000
    names = list(counts)
    expected = {ns: (0, n) for ns, n in counts.items()}
    assert redis_states(r, backend.buckets, tenant, names) == expected
    assert pg_states(pg_dsn, tenant) == expected
    assert dirty_names(r, backend.buckets, tenant, names) == set()
    with psycopg.connect(pg_dsn) as conn:
        placed = conn.execute(
            "SELECT tableoid::regclass::text, min(bucket), max(bucket), count(*) FROM counters"
            " WHERE tenant = %s GROUP BY 1",
            (tenant,),
        ).fetchall()
    ranges = partition_ranges(backend.buckets, backend.partitions)
    assert len(placed) == len(ranges) == 16  # every partition got rows
    for table, low, high, _ in placed:
        part = ranges[int(table.rsplit("_p", 1)[1])]
        assert part.start <= low <= high < part.stop  # the flusher's ranges are the tables'
    flusher.flush_all()
    assert pg_states(pg_dsn, tenant) == expected


@pytest.mark.parametrize("step", ["snapshot", "copy", "commit", "clear"])
def test_a_crash_at_any_step_then_a_normal_flush_leaves_exact_values(
    backend: Settings, r: Any, pg_dsn: str, new_tenant: NewTenant, step: str
) -> None:
    tenant, _ = new_tenant()
    names = [f"n{i}" for i in range(300)]
    increment(r, backend.buckets, tenant, {ns: 1 + i % 3 for i, ns in enumerate(names)})

    def crash(at: str) -> None:
        if at == step:
            raise Crash(at)

    crashing = Flusher(backend, fault=crash)
    with pytest.raises(Crash):
        crashing.flush_all()
    crashing.close()
    stored = pg_states(pg_dsn, tenant)
    dirty = dirty_names(r, backend.buckets, tenant, names)
    if step in ("snapshot", "copy"):
        assert stored == {} and dirty == set(names)  # nothing committed, every mark kept
    elif step == "commit":
        assert stored and dirty == set(names)  # one batch committed, no mark cleared yet
    else:  # "clear" fires once the first batch's marks are cleared, before the next batch
        assert stored and dirty == set(names) - set(stored)
    assert stored == {ns: (0, 1 + names.index(ns) % 3) for ns in stored}  # as Redis held them
    increment(r, backend.buckets, tenant, {ns: 2 for ns in names[::4]})  # life goes on
    flush(backend)  # the restarted flusher
    expected = redis_states(r, backend.buckets, tenant, names)
    assert expected == {ns: (0, 1 + i % 3 + 2 * (i % 4 == 0)) for i, ns in enumerate(names)}
    assert pg_states(pg_dsn, tenant) == expected  # nothing lost, nothing counted twice
    assert dirty_names(r, backend.buckets, tenant, names) == set()


def test_two_flushers_at_once_do_not_deadlock_and_agree(
    backend: Settings, r: Any, pg_dsn: str, new_tenant: NewTenant
) -> None:
    tenant, _ = new_tenant()
    names = [f"x{i}" for i in range(400)]
    increment(r, backend.buckets, tenant, dict.fromkeys(names, 1))
    stop, errors, written = threading.Event(), [], [0, 0]

    def loop(i: int, wait: bool) -> None:
        f = Flusher(backend)
        try:
            while not stop.is_set():
                written[i] += f.flush_all(wait=wait).rows_written
        except Exception as exc:  # a deadlock or any failure ends up here
            errors.append(exc)
        finally:
            f.close()

    threads = [
        threading.Thread(target=loop, args=(0, False)),
        threading.Thread(target=loop, args=(1, True)),
    ]
    for t in threads:
        t.start()
    for k in range(20):  # increments keep arriving while both flush
        increment(r, backend.buckets, tenant, dict.fromkeys(names[k::20], 1))
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads) and errors == []
    flush(backend)
    expected = dict.fromkeys(names, (0, 2))
    assert redis_states(r, backend.buckets, tenant, names) == expected
    assert pg_states(pg_dsn, tenant) == expected
    assert sum(written) >= len(names)


def test_a_partition_owned_by_another_flusher_is_left_to_it(
    backend: Settings, r: Any, flusher: Flusher, pg_dsn: str, new_tenant: NewTenant
) -> None:
    tenant, _ = new_tenant()
    names = [f"o{i}" for i in range(200)]
    increment(r, backend.buckets, tenant, dict.fromkeys(names, 1))
    late = in_open_lineages(r, backend.buckets, tenant, names)  # settled, then written
    ranges = partition_ranges(backend.buckets, backend.partitions)
    in_p0 = {ns for ns in names if keys.bucket_of(tenant, ns, backend.buckets) in ranges[0]}
    assert in_p0
    with psycopg.connect(pg_dsn, autocommit=True) as owner:
        owner.execute("SELECT pg_advisory_lock(%s, 0)", (LOCK_CLASS,))
        assert flusher.flush_all().skipped == 1
        assert set(pg_states(pg_dsn, tenant)) == set(names) - in_p0 - late
        assert dirty_names(r, backend.buckets, tenant, names) == in_p0 | late
    flusher.flush_all()  # the owner is gone (its session ended)
    if late & in_p0:  # settled by that pass: written by the next
        flusher.flush_all()
    assert set(pg_states(pg_dsn, tenant)) == set(names)


def test_a_waiting_flush_awaits_a_busy_partition_holding_no_other(
    backend: Settings, r: Any, pg_dsn: str, new_tenant: NewTenant
) -> None:
    """``counterctl flush --once`` waits for a partition another flusher holds, but not
    while it holds partitions of its own: two such waits could deadlock."""
    flush(backend)  # what earlier tests left
    tenant, _ = new_tenant()
    names = [f"w{i}" for i in range(200)]
    increment(r, backend.buckets, tenant, dict.fromkeys(names, 1))
    late = in_open_lineages(r, backend.buckets, tenant, names)  # settled, then written
    ranges = partition_ranges(backend.buckets, backend.partitions)
    in_p0 = {ns for ns in names if keys.bucket_of(tenant, ns, backend.buckets) in ranges[0]}
    assert 0 < len(in_p0) < len(names)
    flusher = Flusher(backend)
    waiting_sql = (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s::oid"
        " AND objid = 0 AND NOT granted"
    )
    held_sql = (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s::oid"
        " AND granted AND pid <> pg_backend_pid()"
    )
    try:
        with psycopg.connect(pg_dsn, autocommit=True) as owner:
            owner.execute("SELECT pg_advisory_lock(%s, 0)", (LOCK_CLASS,))
            with ThreadPoolExecutor(1) as pool:
                done = pool.submit(flusher.flush_all, True)
                deadline = time.monotonic() + 30
                while not owner.execute(waiting_sql, (LOCK_CLASS,)).fetchone()[0]:  # type: ignore[index]
                    assert time.monotonic() < deadline and not done.done()
                    time.sleep(0.02)
                assert owner.execute(held_sql, (LOCK_CLASS,)).fetchone() == (0,)
                assert set(pg_states(pg_dsn, tenant)) == set(names) - in_p0 - late
                owner.execute("SELECT pg_advisory_unlock(%s, 0)", (LOCK_CLASS,))
                result = done.result(timeout=30)
    finally:
        flusher.close()
    assert result.skipped == 0
    assert set(pg_states(pg_dsn, tenant)) == set(names) - late
    if late:
        flush(backend)
    assert set(pg_states(pg_dsn, tenant)) == set(names)


def test_a_light_pass_over_many_partitions_is_one_batch(
    backend: Settings, r: Any, flusher: Flusher, pg_dsn: str, new_tenant: NewTenant
) -> None:
    """Partitions are locked together up to a batch: one transaction, not one each."""
    flusher.flush_all()  # what earlier tests left
    tenant, _ = new_tenant()
    names = [f"l{i}" for i in range(300)]
    increment(r, backend.buckets, tenant, dict.fromkeys(names, 2))
    late = in_open_lineages(r, backend.buckets, tenant, names)  # settled, then written
    ranges = partition_ranges(backend.buckets, backend.partitions)
    buckets = {keys.bucket_of(tenant, ns, backend.buckets) for ns in names}
    assert sum(1 for r_ in ranges if buckets & set(r_)) > 1
    result = flusher.flush_all()
    assert (result.batches, result.skipped, result.rows_written) == (1, 0, 300 - len(late))
    assert set(pg_states(pg_dsn, tenant)) == set(names) - late
    assert dirty_names(r, backend.buckets, tenant, names) == late


def test_scripts_lost_by_every_master_are_loaded_again_within_the_pass(
    backend: Settings, r: Any, pg_dsn: str, new_tenant: NewTenant
) -> None:
    """A restarted node or a promoted replica has no scripts: the snapshot meets NOSCRIPT
    first, and the clear too when they go between the two; both load them and go on."""
    masters = (
        [r.get_redis_connection(n) for n in r.get_primaries()]
        if hasattr(r, "get_primaries")
        else [r]
    )

    def forget_scripts(step: str) -> None:
        if step == "commit":  # after the snapshot, before the clear
            for node in masters:
                node.script_flush()

    f = Flusher(backend, fault=forget_scripts)
    try:
        f.flush_all()  # what earlier tests left
        tenant, _ = new_tenant()
        names = [f"s{i}" for i in range(200)]
        increment(r, backend.buckets, tenant, dict.fromkeys(names, 3))
        late = in_open_lineages(r, backend.buckets, tenant, names)  # settled, then written
        for node in masters:
            node.script_flush()
        result = f.flush_all()
    finally:
        f.close()
    assert (result.rows_written, result.cleared) == (200 - len(late), 200 - len(late))
    if late:
        flush(backend)
    assert pg_states(pg_dsn, tenant) == dict.fromkeys(names, (0, 3))
    assert not dirty_names(r, backend.buckets, tenant, names)


def test_a_pass_writes_to_each_node_in_chunks_and_reads_each_before_the_next(
    backend: Settings,
    r: Any,
    flusher: Flusher,
    pg_dsn: str,
    new_tenant: NewTenant,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis runs what one read brought before serving anyone else: a pass's scripts in one
    write per node held each node for milliseconds while increments waited behind them."""
    flusher.flush_all()  # what earlier tests left
    tenant, _ = new_tenant()
    names = [f"k{i}" for i in range(600)]
    increment(r, backend.buckets, tenant, dict.fromkeys(names, 2))
    late = in_open_lineages(r, backend.buckets, tenant, names)  # settled, then written
    writes: list[tuple[bool, int]] = []  # (scripts?, commands in the write)
    real = redis_side._raw_replies

    def spy(node: Any, payload: bytes, replies: int) -> list[Any]:
        writes.append((b"EVALSHA" in payload[:40], replies))
        return real(node, payload, replies)

    monkeypatch.setattr(redis_side, "_raw_replies", spy)
    result = flusher.flush_all()
    assert (result.rows_written, result.cleared) == (600 - len(late), 600 - len(late))
    assert pg_states(pg_dsn, tenant) == dict.fromkeys(set(names) - late, (0, 2))
    scripts = [n for is_script, n in writes if is_script]
    scans = [n for is_script, n in writes if not is_script]
    assert sum(scripts) >= 2 * len({keys.bucket_of(tenant, n, backend.buckets) for n in names})
    assert max(scripts) == redis_side.SCRIPT_CHUNK  # full chunks, never more
    assert sum(scans) >= backend.buckets and max(scans) == redis_side.SCAN_CHUNK


def test_a_counter_deleted_from_redis_after_a_flush_continues_from_postgres(
    backend: Settings, r: Any, flusher: Flusher, pg_dsn: str, new_tenant: NewTenant
) -> None:
    tenant, _ = new_tenant()
    increment(r, backend.buckets, tenant, {"gone": 7, "half-gone": 3})
    flusher.flush_all()
    k = keys.bucket_keys(keys.bucket_of(tenant, "gone", backend.buckets))
    r.hdel(k.values, f"{tenant}/gone")  # as a Redis node restarting empty would
    r.zrem(k.dirty, f"{tenant}/gone")
    k2 = keys.bucket_keys(keys.bucket_of(tenant, "half-gone", backend.buckets))
    r.hdel(k2.values, f"{tenant}/half-gone")  # value lost, dirty mark still there
    r.zadd(k2.dirty, {f"{tenant}/half-gone": 1})
    flusher.flush_all()
    assert pg_states(pg_dsn, tenant) == {"gone": (0, 7), "half-gone": (0, 3)}  # not lowered
    assert dirty_names(r, backend.buckets, tenant, ["half-gone"]) == set()  # mark dropped
    store = make_store(backend)
    try:
        assert store.increment(tenant, "gone") == 8  # hydrated from PostgreSQL
        assert store.increment(tenant, "half-gone") == 4
    finally:
        store.close()
    flusher.flush_all()
    assert pg_states(pg_dsn, tenant) == {"gone": (0, 8), "half-gone": (0, 4)}


def test_increments_acknowledged_after_a_failover_lost_some_are_kept_and_the_loss_added(
    backend: Settings,
    r: Any,
    flusher: Flusher,
    pg_dsn: str,
    new_tenant: NewTenant,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The bug this replaced: repair overwrote Redis with PostgreSQL's value, erasing what
    was acknowledged after the loss (10 flushed, 6 lost, 1 more acknowledged -> 10, not 11)."""
    tenant, _ = new_tenant()
    increment(r, backend.buckets, tenant, {"views": 10})
    flusher.flush_all()
    k = keys.bucket_keys(keys.bucket_of(tenant, "views", backend.buckets))
    # A promoted replica that missed 6 acknowledged increments: the old master's lineage,
    # an older value. Its next increment sees another node's history and opens a lineage.
    r.set(k.lineage, "0" * 40 + ":1:s")
    r.hset(k.values, f"{tenant}/views", 4)
    increment(r, backend.buckets, tenant, {"views": 1})  # acknowledged as 5
    assert r.get(k.lineage).decode().endswith(":o")
    repairs, added = (
        metric("counter_flush_repairs_total"),
        metric("counter_flush_repaired_increments_total"),
    )
    caplog.set_level(logging.WARNING, logger="counter.repair")
    result = flusher.flush_all()  # settles: adds the 6 PostgreSQL holds beyond the base of 4
    # Only this test's counter is dirty (the first pass flushed everything else): read,
    # not written (its lineage is open), settled, its mark kept for the next pass.
    assert (result.counters, result.rows_written, result.repaired, result.cleared) == (1, 0, 1, 0)
    assert redis_states(r, backend.buckets, tenant, ["views"]) == {"views": (0, 11)}
    assert pg_states(pg_dsn, tenant) == {"views": (0, 10)}  # nothing written before settling
    flusher.flush_all()
    assert pg_states(pg_dsn, tenant) == {"views": (0, 11)}  # 10 + the one acknowledged after
    assert dirty_names(r, backend.buckets, tenant, ["views"]) == set()
    assert metric("counter_flush_repairs_total") - repairs == 1
    assert metric("counter_flush_repaired_increments_total") - added == 6
    logged = [r for r in caplog.records if f"{tenant}/views: +6" in str(r.__dict__)]
    assert len(logged) == 1
    increment(r, backend.buckets, tenant, {"views": 1})
    assert redis_states(r, backend.buckets, tenant, ["views"]) == {"views": (0, 12)}


def test_a_newer_epoch_replaces_a_larger_value_and_an_older_one_never_does(
    backend: Settings, r: Any, flusher: Flusher, pg_dsn: str, new_tenant: NewTenant
) -> None:
    tenant, _ = new_tenant()
    increment(r, backend.buckets, tenant, {"reset": 50})
    flusher.flush_all()
    k = keys.bucket_keys(keys.bucket_of(tenant, "reset", backend.buckets))
    member = f"{tenant}/reset"
    r.hset(k.values, member, 2)  # what a reset (epoch raise) would leave
    r.hset(k.epochs, member, 1)
    r.zadd(k.dirty, {member: int(time.time() * 1000)})
    flusher.flush_all()
    assert pg_states(pg_dsn, tenant) == {"reset": (1, 2)}
    r.hdel(k.epochs, member)  # back to epoch 0 with a larger value: older, must not win
    r.hset(k.values, member, 40)
    r.zadd(k.dirty, {member: int(time.time() * 1000)})
    flusher.flush_all()  # Redis behind within its lineage: the bucket is reopened ...
    assert pg_states(pg_dsn, tenant) == {"reset": (1, 2)}
    flusher.flush_all()  # ... and settled: PostgreSQL's newer epoch is taken back
    assert pg_states(pg_dsn, tenant) == {"reset": (1, 2)}
    assert redis_states(r, backend.buckets, tenant, ["reset"]) == {"reset": (1, 2)}  # repaired


def test_hot_counters_do_not_starve_the_rest_of_their_bucket(
    request: pytest.FixtureRequest, pg_dsn: str, new_tenant: NewTenant
) -> None:
    small = backend_settings(request, "single", pg_dsn, flush_batch=2)
    tenant, _ = new_tenant()
    names = same_bucket_names(tenant, small.buckets, 6)
    r = connect(small)
    increment(r, small.buckets, tenant, dict.fromkeys(names, 1))
    # Same score (same ms), so the zset orders them by name: these two are read first,
    # and they change before every clear, so their marks stay at the front.
    hot = sorted(names)[:2]

    def touch(step: str) -> None:
        if step == "commit":
            increment(r, small.buckets, tenant, dict.fromkeys(hot, 1))

    f = Flusher(small, fault=touch)
    f.flush_all()
    f.close()
    assert set(pg_states(small.pg_dsn, tenant)) == set(names)  # every counter got its turn
    assert dirty_names(r, small.buckets, tenant, names) == set(hot)
    r.close()


def test_a_counter_changed_during_a_flush_keeps_its_mark_until_its_new_value_is_flushed(
    backend: Settings, r: Any, pg_dsn: str, new_tenant: NewTenant
) -> None:
    tenant, _ = new_tenant()
    increment(r, backend.buckets, tenant, {"busy": 3, "calm": 3})
    once = [True]

    def race(step: str) -> None:  # an increment lands between busy's commit and its clear
        if step == "commit" and once and "busy" in pg_states(pg_dsn, tenant):
            once.pop()
            increment(r, backend.buckets, tenant, {"busy": 1})

    f = Flusher(backend, fault=race)
    f.flush_all()
    assert pg_states(pg_dsn, tenant) == {"busy": (0, 3), "calm": (0, 3)}
    assert dirty_names(r, backend.buckets, tenant, ["busy", "calm"]) == {"busy"}
    f.flush_all()
    f.close()
    assert pg_states(pg_dsn, tenant) == {"busy": (0, 4), "calm": (0, 3)}
    assert dirty_names(r, backend.buckets, tenant, ["busy", "calm"]) == set()


def test_flush_lag_is_the_oldest_unflushed_mark_and_stays_true_for_a_busy_counter(
    backend: Settings, r: Any, new_tenant: NewTenant
) -> None:
    tenant, _ = new_tenant()
    increment(r, backend.buckets, tenant, {"busy": 1})
    k = keys.bucket_keys(keys.bucket_of(tenant, "busy", backend.buckets))
    member = keys.member(tenant, "busy")
    r.zadd(k.dirty, {member: int(time.time() * 1000) - 3_600_000}, xx=True)  # dirty for 1 h

    def busy(step: str) -> None:  # the counter changes during every flush of it
        if step == "commit":
            increment(r, backend.buckets, tenant, {"busy": 1})

    started_ms = int(time.time() * 1000)
    f = Flusher(backend, fault=busy)
    f.flush_all()
    assert metric("counter_flush_lag_seconds") >= 3600
    score = r.zscore(k.dirty, member)
    assert score is not None and score >= started_ms  # still dirty, but only since this pass
    f.fault = lambda step: None
    f.flush_all()
    assert metric("counter_flush_lag_seconds") < 60
    assert r.zscore(k.dirty, member) is None
    f.close()


def test_each_flusher_metric_counts_exactly_what_a_pass_did(
    backend: Settings, r: Any, flusher: Flusher, new_tenant: NewTenant
) -> None:
    """README's flusher metrics, by value: 100 dirty counters, one pass through the loop."""
    flusher.flush_all()  # what earlier tests left dirty is flushed first
    tenant, _ = new_tenant()
    counts = {f"m{i}": 1 + i % 3 for i in range(100)}
    increment(r, backend.buckets, tenant, counts)
    late = in_open_lineages(r, backend.buckets, tenant, list(counts))  # settled, not written
    names = (
        "counter_flush_rows_written_total",
        "counter_flush_marks_cleared_total",
        "counter_flush_batch_size_count",
        "counter_flush_batch_size_sum",
        "counter_flush_pass_seconds_count",
    )
    before = {name: metric(name) for name in names}
    result = attempt(flusher, BackendStatus())
    written = 100 - len(late)
    assert result is not None and (result.counters, result.rows_written) == (100, written)
    assert {name: metric(name) - before[name] for name in names} == {
        "counter_flush_rows_written_total": written,
        "counter_flush_marks_cleared_total": written,
        "counter_flush_batch_size_count": result.batches,  # one observation per batch
        "counter_flush_batch_size_sum": written,
        "counter_flush_pass_seconds_count": 1,
    }
    assert metric("counter_flush_backend_up", backend="redis") == 1
    assert metric("counter_flush_backend_up", backend="postgres") == 1
    assert 0 <= metric("counter_flush_lag_seconds") < 60  # these marks are seconds old
    flusher.flush_all()
    assert metric("counter_flush_lag_seconds") == 0  # nothing dirty at the start of the pass
