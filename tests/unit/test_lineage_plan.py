"""Which windows a flush batch writes, settles or drops, by bucket lineage (pure logic)."""

from __future__ import annotations

from typing import NamedTuple

from service.flusher.lineage import decide, parse


class Snap(NamedTuple):
    bucket: int
    lineage: str


def test_a_lineage_string_is_its_id_and_its_state() -> None:
    assert parse("ab12:1700000000000001:o") == ("ab12:1700000000000001", "o")
    assert parse("") == ("", "")


def test_the_current_settled_lineage_and_data_without_one_are_written() -> None:
    plan = decide([Snap(1, "x:1:s"), Snap(2, "")], {1: ["x:1"]})
    assert plan.write == [Snap(1, "x:1:s"), Snap(2, "")]
    assert not plan.settle and not plan.accept and not plan.stale


def test_an_unseen_open_lineage_is_accepted_and_settled_before_anything_is_written() -> None:
    plan = decide([Snap(1, "y:2:o"), Snap(1, "y:2:o")], {1: ["x:1"]})
    assert plan.accept == {1: "y:2"} and plan.settle == {1: "y:2"}
    assert plan.write == []


def test_an_open_lineage_already_accepted_is_settled_again_not_accepted_twice() -> None:
    plan = decide([Snap(1, "y:2:o")], {1: ["x:1", "y:2"]})
    assert plan.settle == {1: "y:2"} and plan.accept == {}


def test_a_bucket_new_to_its_node_is_accepted_and_written_at_once() -> None:
    plan = decide([Snap(3, "z:5:s")], {3: ["x:1"]})
    assert plan.accept == {3: "z:5"} and plan.write == [Snap(3, "z:5:s")]


def test_a_replaced_lineage_is_never_written() -> None:
    plan = decide([Snap(1, "x:1:s"), Snap(1, "x:1:o")], {1: ["x:1", "y:2"]})
    assert plan.stale == [Snap(1, "x:1:s"), Snap(1, "x:1:o")]
    assert not plan.write and not plan.settle and not plan.accept


def test_a_lineage_that_changes_within_a_batch_waits_for_the_next_pass() -> None:
    plan = decide([Snap(1, "y:2:s"), Snap(1, "z:3:o")], {1: ["x:1"]})
    assert plan.accept == {1: "y:2"} and plan.write == [Snap(1, "y:2:s")]
    assert plan.deferred == [Snap(1, "z:3:o")] and not plan.stale
