"""How verify classifies a counter from its Redis and PostgreSQL (epoch, value)."""

from __future__ import annotations

import pytest

from service.ops.verify import classify


@pytest.mark.parametrize(
    ("redis", "pg", "dirty", "kind"),
    [
        ((0, 5), (0, 5), False, None),
        ((0, 5), (0, 5), True, None),  # flushed, mark not cleared yet: fine
        ((0, 7), (0, 5), True, "pending"),  # not flushed yet: fine
        ((0, 7), (0, 5), False, "unflushed"),  # clean but differs: a mark was lost
        ((0, 3), (0, 5), True, "postgres-ahead"),  # Redis lost acknowledged increments
        ((0, 3), (0, 5), False, "postgres-ahead"),
        ((1, 0), (0, 5), True, "pending"),  # a newer epoch (reset) outranks a larger value
        ((0, 9), (1, 2), False, "postgres-ahead"),
    ],
)
def test_classify(
    redis: tuple[int, int], pg: tuple[int, int], dirty: bool, kind: str | None
) -> None:
    assert classify(redis, pg, dirty) == kind
