"""What one process saw happen to each counter, and how tallies travel and merge.

A counter is identified as ``"<key index>/<namespace>"``: the index into the run's
API key list names the tenant (keys belong to one tenant each; tenants are resolved
from PostgreSQL only when the durability check needs them).

Per counter: increments *attempted* (counted before the request is sent, so a user
killed mid-request still counts), *acknowledged* (200 with a well-formed value),
*rejected* (4xx: the contract says nothing was applied) and the values returned.
Everything else an attempt can end in (503, 5xx, timeout, dropped connection, a
malformed 200, a user stopped mid-flight) is *indeterminate*: it may or may not
have been applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_RECORDED_VIOLATIONS = 200  # per process; the total is still counted


def counter_id(key_index: int, namespace: str) -> str:
    return f"{key_index}/{namespace}"


def split_counter_id(cid: str) -> tuple[int, str]:
    index, _, namespace = cid.partition("/")
    return int(index), namespace


@dataclass
class CounterTally:
    attempted: int = 0
    acked: int = 0
    rejected: int = 0
    reads: int = 0
    max_read: int = -1  # highest value any GET returned; -1 = never read
    values: list[int] = field(default_factory=list)

    @property
    def indeterminate(self) -> int:
        return self.attempted - self.acked - self.rejected

    def merge(self, other: CounterTally) -> None:
        self.attempted += other.attempted
        self.acked += other.acked
        self.rejected += other.rejected
        self.reads += other.reads
        self.max_read = max(self.max_read, other.max_read)
        self.values.extend(other.values)


@dataclass
class Tally:
    counters: dict[str, CounterTally] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)  # seen inline by users
    violation_count: int = 0
    violation_kinds: dict[str, int] = field(default_factory=dict)  # all of them, by kind

    def of(self, cid: str) -> CounterTally:
        entry = self.counters.get(cid)
        if entry is None:
            entry = self.counters[cid] = CounterTally()
        return entry

    def violation(self, kind: str, text: str) -> None:
        """Recorded as ``[kind] text`` (the first few); counted by kind (all of them)."""
        self.violation_count += 1
        self.violation_kinds[kind] = self.violation_kinds.get(kind, 0) + 1
        if len(self.violations) < MAX_RECORDED_VIOLATIONS:
            self.violations.append(f"[{kind}] {text}")

    def merge(self, other: Tally) -> None:
        for cid, entry in other.counters.items():
            self.of(cid).merge(entry)
        room = MAX_RECORDED_VIOLATIONS - len(self.violations)
        self.violations.extend(other.violations[: max(room, 0)])
        self.violation_count += other.violation_count
        for kind, n in other.violation_kinds.items():
            self.violation_kinds[kind] = self.violation_kinds.get(kind, 0) + n

    # PERF: sent once per worker at the end of a bounded run. Values go as a sorted
    # list (distinctness needs the values themselves); msgpack packs small ints in
    # 1-5 bytes, so 100k increments are well under a megabyte.
    def to_wire(self) -> dict[str, Any]:
        return {
            "counters": {
                cid: [c.attempted, c.acked, c.rejected, c.reads, c.max_read, sorted(c.values)]
                for cid, c in self.counters.items()
            },
            "violations": list(self.violations),
            "violation_count": self.violation_count,
            "violation_kinds": dict(self.violation_kinds),
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Tally:
        tally = cls(violations=list(data.get("violations", [])))
        tally.violation_count = int(data.get("violation_count", 0))
        tally.violation_kinds = {str(k): int(n) for k, n in data.get("violation_kinds", {}).items()}
        for cid, (attempted, acked, rejected, reads, max_read, values) in data["counters"].items():
            tally.counters[cid] = CounterTally(
                int(attempted), int(acked), int(rejected), int(reads), int(max_read),
                [int(v) for v in values],
            )  # fmt: skip
        return tally
