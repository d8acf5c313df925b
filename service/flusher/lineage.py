"""Which windows of a batch may be written, and which buckets must be settled first.

A bucket's lineage (``c:{b}:l``, written by incr.lua) says which node history its
counts come from: ``"<replid>:<start µs>:<state>"``, state ``o`` (open: values may
lack increments PostgreSQL holds) or ``s`` (settled). PostgreSQL keeps every
lineage it accepted per bucket (``bucket_lineages``); the newest is current.

- open, unseen: accept it as current and settle it (add what PostgreSQL holds
  beyond each counter's base); its rows wait for the next pass;
- open, current: accepted before a crash, not settled yet: settle again (the
  amounts are the same: nothing else writes that bucket meanwhile);
- settled and current, or without a lineage (data from before lineages): write;
- settled, unseen: a bucket new to its node (every counter hydrated from
  PostgreSQL): accept it and write;
- seen but not current: a stale node (a demoted master, a replica that lost a
  failover): never written, so its rows cannot undo a newer history.

Each lineage id is unique (a node's replication id and the microsecond it began),
so "seen" never confuses two histories.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar


class HasLineage(Protocol):
    @property
    def bucket(self) -> int: ...
    @property
    def lineage(self) -> str: ...


def parse(lineage: str) -> tuple[str, str]:
    """``(id, state)`` of ``"<replid>:<start µs>:<o|s>"``; ``("", "")`` when unset."""
    if not lineage:
        return "", ""
    ident, _, state = lineage.rpartition(":")
    return ident, state


S = TypeVar("S", bound=HasLineage)


@dataclass
class Plan(Generic[S]):
    write: list[S] = field(default_factory=list)
    settle: dict[int, str] = field(default_factory=dict)  # bucket -> lineage id
    accept: dict[int, str] = field(default_factory=dict)  # bucket -> lineage id (new rows)
    stale: list[S] = field(default_factory=list)  # a lineage PostgreSQL replaced: never written
    deferred: list[S] = field(default_factory=list)  # changed within the batch: next pass


def decide(snaps: Sequence[S], known: Mapping[int, Sequence[str]]) -> Plan[S]:
    """Sort a batch's snapshots; ``known``: the lineages PostgreSQL accepted, oldest first."""
    plan: Plan[S] = Plan()
    for snap in snaps:
        ident, state = parse(snap.lineage)
        seen = known.get(snap.bucket, ())
        current = plan.accept.get(snap.bucket) or (seen[-1] if seen else None)
        if not ident:
            plan.write.append(snap)
        elif ident == current or (ident not in seen and snap.bucket not in plan.accept):
            if ident != current:
                plan.accept[snap.bucket] = ident
            if state == "o":
                plan.settle[snap.bucket] = ident
            else:
                plan.write.append(snap)
        elif ident in seen:
            plan.stale.append(snap)
        else:
            plan.deferred.append(snap)
    return plan
