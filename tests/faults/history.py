"""Jepsen-style histories of increments, and the checker that judges one. Pure: no I/O.

Every POST a load client sends becomes one `Op`: acknowledged (200, with the
value returned), failed for certain (a 4xx, or a 503 whose body says the
increment did not run), or of unknown outcome (a timeout, a dropped connection,
a 503 "may not have applied", a 500). Per counter, with `delta = final − initial`:

    acknowledged lost = max(0, acknowledged − delta)            (never more than the bound)
    counted twice     = max(0, delta − acknowledged − unknown)  (always 0)

An unknown outcome may have been applied once or not at all, so it excuses a
count above the acknowledged ones but never one below.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class Outcome(StrEnum):
    OK = "ok"
    FAIL = "fail"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Op:
    """One increment as the client saw it; times are time.monotonic() seconds."""

    counter: str
    outcome: Outcome
    start: float
    end: float
    value: int | None = None  # the value acknowledged (OK only)
    error: str = ""  # error class (FAIL and UNKNOWN)


# 503 bodies that say the increment was not run: the lead's wording ("did not run"), and
# today's two messages raised before any Redis write (no client yet, a PostgreSQL read).
NOT_APPLIED = ("did not run", "not applied", "was not applied")
NOT_APPLIED_TODAY = ("Counter store unavailable, retry later", "Database unavailable, retry later")


def classify(status: int, body: bytes) -> tuple[Outcome, str, int | None]:
    """(outcome, error class, value) of an HTTP answer to a POST increment."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if status == 200:
        value = doc.get("data", {}).get("value") if isinstance(doc, dict) else None
        if isinstance(value, int):
            return Outcome.OK, "", value
        return Outcome.UNKNOWN, "200 without a value", None
    if 400 <= status < 500:
        return Outcome.FAIL, f"{status}", None
    if status == 503:
        message = str(doc.get("message", "")) if isinstance(doc, dict) else ""
        if "may" not in message and (
            any(m in message for m in NOT_APPLIED) or message in NOT_APPLIED_TODAY
        ):
            return Outcome.FAIL, "503 not applied", None
        return Outcome.UNKNOWN, "503 may have applied", None
    return Outcome.UNKNOWN, f"{status}", None  # a 500 may come after the write


@dataclass(frozen=True)
class Expectation:
    """What a scenario promises."""

    max_lost: int = 0  # acknowledged increments it may lose (the bound)
    duplicates_allowed: bool = False  # after a data loss, values may be acknowledged again
    # Errors (failed or unknown) are allowed only while a window is open: (start, end) in
    # the history's clock. None: anywhere (the scenario only bounds loss, not errors).
    error_windows: Sequence[tuple[float, float]] | None = ()
    bound_note: str = ""  # how the bound was obtained, for the report


@dataclass
class Verdict:
    """The checked result of one scenario, as the report shows it."""

    scenario: str
    requests: int = 0
    acknowledged: int = 0
    failed: int = 0
    unknown: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # by class
    lost: int = 0
    lost_counters: int = 0
    counted_twice: int = 0
    duplicate_values: int = 0  # (counter, value) pairs acknowledged more than once
    recovery_s: float | None = 0.0  # None: errors went on to the end
    bound: int = 0
    bound_note: str = ""
    counters: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def recovery(ops: Sequence[Op], fault_at: float | None) -> float | None:
    """Seconds from the fault to the first 200 after which no request failed; 0 without
    errors after the fault, None if errors went on to the end of the history."""
    if fault_at is None:
        return 0.0
    after = sorted((op for op in ops if op.end >= fault_at), key=lambda op: op.start)
    bad = [op for op in after if op.outcome is not Outcome.OK]
    if not bad:
        return 0.0
    last_bad_start = max(op.start for op in bad)
    good = [op for op in after if op.outcome is Outcome.OK and op.start > last_bad_start]
    if not good:
        return None
    return max(0.0, min(op.end for op in good) - fault_at)


def _in_windows(op: Op, windows: Iterable[tuple[float, float]]) -> bool:
    return any(lo <= op.start <= hi or lo <= op.end <= hi for lo, hi in windows)


def check(
    scenario: str,
    ops: Sequence[Op],
    initial: Mapping[str, int],
    final_pg: Mapping[str, int],
    final_api: Mapping[str, int],
    expect: Expectation,
    fault_at: float | None = None,
) -> Verdict:
    """Judge a history against the final values read from PostgreSQL and from the API."""
    by_counter: dict[str, list[Op]] = {}
    for op in ops:
        by_counter.setdefault(op.counter, []).append(op)
    names = sorted(set(initial) | set(by_counter) | set(final_pg))
    v = Verdict(scenario=scenario, requests=len(ops), counters=len(names))
    v.bound, v.bound_note = expect.max_lost, expect.bound_note
    errors: Counter[str] = Counter()
    outside: list[Op] = []
    mismatched = []
    for name in names:
        mine = by_counter.get(name, [])
        acked = [op.value for op in mine if op.outcome is Outcome.OK and op.value is not None]
        unknown = sum(op.outcome is Outcome.UNKNOWN for op in mine)
        v.acknowledged += len(acked)
        v.unknown += unknown
        v.failed += sum(op.outcome is Outcome.FAIL for op in mine)
        for op in mine:
            if op.outcome is not Outcome.OK:
                errors[op.error] += 1
                if expect.error_windows is not None and not _in_windows(op, expect.error_windows):
                    outside.append(op)
        delta = final_pg.get(name, 0) - initial.get(name, 0)
        lost = max(0, len(acked) - delta)
        v.lost += lost
        v.lost_counters += lost > 0
        v.counted_twice += max(0, delta - len(acked) - unknown)
        v.duplicate_values += len(acked) - len(set(acked))
        if final_api.get(name) != final_pg.get(name):
            mismatched.append(f"{name}: PostgreSQL {final_pg.get(name)} API {final_api.get(name)}")
    v.errors = dict(errors.most_common())
    v.recovery_s = recovery(ops, fault_at)

    if v.lost > expect.max_lost:
        v.problems.append(
            f"{v.lost} acknowledged increments lost (on {v.lost_counters} counters), "
            f"bound {expect.max_lost}"
        )
    if v.counted_twice:
        v.problems.append(f"{v.counted_twice} increments counted twice")
    if v.duplicate_values and not expect.duplicates_allowed:
        v.problems.append(f"{v.duplicate_values} values acknowledged twice")
    if errors.get("500"):
        v.problems.append(f"{errors['500']} answers were 500")
    if outside:
        kinds = Counter(op.error for op in outside)
        v.problems.append(f"{len(outside)} errors outside the fault's window: {dict(kinds)}")
    if mismatched:
        v.problems.append(
            f"{len(mismatched)} counters differ between PostgreSQL and the API after a flush: "
            + "; ".join(mismatched[:3])
        )
    if v.recovery_s is None:
        v.problems.append("errors went on to the end: never recovered")
    return v
