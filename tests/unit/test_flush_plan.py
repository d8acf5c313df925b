"""Pure flush planning: partition ownership ranges and batch windows."""

from __future__ import annotations

import pytest

from service import keys
from service.flusher.plan import BatchPlanner, Window, partition_groups, partition_ranges
from service.scripts import lua_source


def test_partition_ranges_follow_the_migration_formula() -> None:
    ranges = partition_ranges(4096, 16)
    assert len(ranges) == 16
    assert all(len(r) == 256 for r in ranges)
    assert [b for r in ranges for b in r] == list(range(4096))


def test_uneven_ranges_cover_every_bucket_once_and_never_exceed_the_bucket_count() -> None:
    assert partition_ranges(10, 3) == [range(0, 3), range(3, 6), range(6, 10)]
    assert partition_ranges(4, 16) == [range(i, i + 1) for i in range(4)]


def drain(planner: BatchPlanner) -> list[list[Window]]:
    batches = []
    while windows := planner.next_batch():
        batches.append(windows)
    return batches


def test_batches_are_bounded_and_cover_every_dirty_counter_once() -> None:
    counts = {7: 3, 1: 4, 9: 0, 300: 6}
    batches = drain(BatchPlanner(counts, batch=5))
    assert all(sum(w.count for w in b) <= 5 for b in batches)
    taken: dict[int, int] = {}
    for b in batches:
        for w in b:
            taken[w.bucket] = taken.get(w.bucket, 0) + w.count
    assert taken == {1: 4, 7: 3, 300: 6}
    assert len(batches) == 3  # 13 counters in batches of at most 5


def test_a_bucket_larger_than_the_batch_is_read_in_windows_from_its_oldest_marks() -> None:
    """Each window starts at rank 0: the previous batch removed or moved back what it read."""
    assert drain(BatchPlanner({5: 7}, batch=3)) == [
        [Window(5, 0, 3)],
        [Window(5, 0, 3)],
        [Window(5, 0, 1)],
    ]


def test_buckets_share_a_batch_in_bucket_order() -> None:
    assert BatchPlanner({9: 2, 4: 2, 6: 2}, batch=5).next_batch() == [
        Window(4, 0, 2),
        Window(6, 0, 2),
        Window(9, 0, 1),
    ]


def test_a_batch_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        BatchPlanner({1: 1}, batch=0)


def test_the_flusher_only_flushes_names_the_api_accepts() -> None:
    """snapshot.lua drops marks of members outside [A-Za-z0-9_-]/[A-Za-z0-9_-] (COPY text
    needs no escaping then). Widening the API's names must widen that pattern too."""
    assert keys.NAME_RE.pattern == "[A-Za-z0-9_-]{1,64}"
    assert keys.TENANT_RE.pattern == "[A-Za-z0-9_-]{1,32}"
    assert "'^([%w_%-]+)/([%w_%-]+)$'" in lua_source("snapshot")


def test_the_oldest_mark_score_is_read_from_resp2_and_resp3_replies() -> None:
    from service.flusher.redis_side import _head_score

    assert _head_score([b"t/x", b"1700000000123"]) == 1700000000123.0  # RESP2: flat
    assert _head_score([[b"t/x", 1700000000123.0]]) == 1700000000123.0  # RESP3: pairs


def test_partitions_are_grouped_up_to_about_one_batch_of_dirty_counters() -> None:
    dirty = {3: 10, 4: 20, 5: 40, 0: 5, 1: 60, 2: 1}
    # in the pass's order; a group closes once it holds a batch (50) or more
    assert partition_groups([3, 4, 5, 0, 1, 2], dirty, 50) == [[3, 4, 5], [0, 1], [2]]
    assert partition_groups([3, 4, 5, 0, 1, 2], dirty, 10_000) == [[3, 4, 5, 0, 1, 2]]
    # a partition with a batch or more is a group of its own: flushers share heavy passes
    assert partition_groups([1, 5, 4], dirty, 1) == [[1], [5], [4]]
    assert partition_groups([], dirty, 50) == []
