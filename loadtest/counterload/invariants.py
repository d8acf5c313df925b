"""The invariants a run must keep, as pure functions over what was observed.

For every counter touched by the run, with ``start`` read before load began and
``final`` read after every user stopped:

* atomicity: every acknowledged increment returned a distinct value;
* count (no lost or phantom increments): ``final`` lies in ``[start + acknowledged,
  start + attempted - rejected]`` (with no indeterminate outcome, the single value
  ``start + acknowledged``), and every returned value lies in ``(start, final]``: a
  server that drops increments yet hands out distinct values fails here, not above;
* reads: no GET returned more than ``start + attempted - rejected`` (per-user
  monotonic reads are checked inline by the users and arrive as tallied violations);
* durability: after a flush, PostgreSQL holds what the API (Redis) serves.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .tally import CounterTally

SHOW_DUPLICATES = 5


@dataclass(frozen=True)
class Violation:
    kind: str  # atomicity | count | reads | durability | threshold | protocol | completeness
    counter: str  # the counter it is about, or "run"
    expected: str
    actual: str

    def __str__(self) -> str:
        return (
            f"VIOLATION [{self.kind}] {self.counter}: "
            f"expected {self.expected}; actual {self.actual}"
        )


def bounds(start: int, tally: CounterTally) -> tuple[int, int]:
    """``[low, high]`` the final value must lie in: acknowledged .. possibly applied."""
    return start + tally.acked, start + tally.attempted - tally.rejected


def duplicates(values: list[int]) -> dict[int, int]:
    """Values returned more than once, with how often."""
    return {v: n for v, n in Counter(values).items() if n > 1}


def check_counter(label: str, start: int, final: int, tally: CounterTally) -> list[Violation]:
    found: list[Violation] = []
    dups = duplicates(tally.values)
    if dups:
        shown = ", ".join(f"{v} x{n}" for v, n in sorted(dups.items())[:SHOW_DUPLICATES])
        more = f" (+{len(dups) - SHOW_DUPLICATES} more)" if len(dups) > SHOW_DUPLICATES else ""
        found.append(Violation(
            "atomicity", label, "every acknowledged increment returns a distinct value",
            f"{len(dups)} value(s) returned more than once: {shown}{more}",
        ))  # fmt: skip
    outside = [v for v in tally.values if not start < v <= final]
    if outside:
        found.append(Violation(
            "count", label, f"returned values in ({start}, {final}]",
            f"{len(outside)} outside, e.g. {sorted(outside)[:SHOW_DUPLICATES]}",
        ))  # fmt: skip
    low, high = bounds(start, tally)
    if not low <= final <= high:
        expected = (
            f"final == start {start} + acknowledged {tally.acked} = {low}"
            if low == high
            else f"final in [{low}, {high}] (start {start}, acknowledged {tally.acked}, "
            f"{tally.indeterminate} indeterminate)"
        )
        found.append(Violation("count", label, expected, f"final {final}"))
    if tally.max_read > high:
        found.append(Violation(
            "reads", label, f"every GET <= start + attempted = {high}",
            f"a GET returned {tally.max_read}",
        ))  # fmt: skip
    return found


def compare_durable(api: dict[str, int], pg: dict[str, int | None]) -> list[Violation]:
    """PostgreSQL must hold, for every counter, the value the API (Redis) serves."""
    found = []
    for label, value in sorted(api.items()):
        stored = pg.get(label)
        if stored != value:
            actual = "no row in PostgreSQL" if stored is None else f"PostgreSQL {stored}"
            found.append(Violation("durability", label, f"PostgreSQL == Redis == {value}", actual))
    return found
