"""benchmarks/worker_path.py measures the batch path it claims to: every item decided."""

from __future__ import annotations

import orjson

from benchmarks.worker_path import ITEMS, _CannedStore, _Counted, bodies, request


def test_every_item_gets_the_canned_value_and_repeats_their_own() -> None:
    batches = _Counted(_CannedStore())  # type: ignore[arg-type]
    body = b'{"increments":[{"namespace":"a","by":2},{"namespace":"b"},{"namespace":"a","by":3}]}'
    results = orjson.loads(request(batches, body))["data"]["results"]
    # The canned Redis answers 5 for a counter after all its items: "a" got 2 + 3 in one
    # item, so its first item reads 5 - 3.
    assert results == [
        {"namespace": "a", "value": 2},
        {"namespace": "b", "value": 5},
        {"namespace": "a", "value": 5},
    ]


def test_its_bodies_are_full_batches_and_unique_names_never_repeat() -> None:
    batches = _Counted(_CannedStore())  # type: ignore[arg-type]
    raw = bodies(3, 1000, unique=True)
    names = [i["namespace"] for b in raw for i in orjson.loads(b)["increments"]]
    assert len(names) == len(set(names)) == 3 * ITEMS
    for body in raw:
        results = orjson.loads(request(batches, body))["data"]["results"]
        assert [r["value"] for r in results] == [5] * ITEMS
