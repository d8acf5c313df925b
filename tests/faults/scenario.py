"""The frame every fault scenario shares: start the stack and the load, fault, finish, check.

    with scenario("b master killed", tmp_path, cluster, pg) as run:
        run.warm_up()
        t = run.load.mark("master killed"); ...     # the fault
        run.run_for(10)
        verdict = run.finish(Expectation(...), fault_at=t)

`finish` stops the load, flushes everything (`counterctl flush --once`), reads
every counter from PostgreSQL and from the API, and checks the history.
COUNTER_FAULTS_QUICK=1 halves every load period (the CI form).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from devstack import Placement, RedisCluster
from tests.faults.history import Expectation, Op, Outcome, Verdict, check
from tests.faults.load import Load
from tests.faults.stack import FaultStack

QUICK = os.environ.get("COUNTER_FAULTS_QUICK") == "1"
CLIENTS = 4
RATE = 40.0  # POSTs per second per client: ~160/s in all, light on a shared 2-core machine
COUNTERS = 60
NODE_TIMEOUT_MS = 2000
FLUSHED_WITHIN = 4.0  # s: the flush interval is 0.5 s; further behind is not lag but a stall


def seconds(full: float) -> float:
    return full / 2 if QUICK else full


def load_note() -> str:
    return (
        f"{CLIENTS} clients × {RATE:.0f} POST/s over {COUNTERS} counters, "
        f"cluster-node-timeout {NODE_TIMEOUT_MS} ms, COUNTER_REDIS_TIMEOUT 1 s"
    )


def acked_max(ops: Sequence[Op], before: float | None = None) -> dict[str, int]:
    """Highest value acknowledged per counter (by requests answered before `before`)."""
    found: dict[str, int] = {}
    for op in ops:
        if op.outcome is Outcome.OK and op.value is not None:
            if before is None or op.end <= before:
                found[op.counter] = max(found.get(op.counter, 0), op.value)
    return found


class Run:
    """A running scenario: its stack, its load and its counters."""

    def __init__(self, name: str, stack: FaultStack, counters: list[str]) -> None:
        self.name = name
        self.stack = stack
        self.counters = counters
        self.load = Load(stack.url, stack.api_key, counters, clients=CLIENTS, rate=RATE)
        self.started = 0.0
        self._lag_checks: list[tuple[str, dict[str, tuple[int, int]]]] = []

    def start(self) -> None:
        self.started = self.load.mark("load started")
        self.load.start()

    def warm_up(self, full: float = 5.0) -> None:
        self.run_for(full)

    def run_for(self, full: float) -> None:
        time.sleep(seconds(full))

    def unflushed(self, older_than: float) -> dict[str, tuple[int, int]]:
        """Counters whose value acknowledged more than `older_than` seconds ago is not in
        PostgreSQL yet: counter → (PostgreSQL, acknowledged)."""
        acked = acked_max(self.load.ops(), before=time.monotonic() - older_than)
        pg = self.stack.pg_values()
        return {c: (pg.get(c, 0), v) for c, v in acked.items() if pg.get(c, 0) < v}

    def expect_flushed(self, when: str) -> None:
        """Check now, under load, that the running flushers keep up: everything acknowledged
        more than FLUSHED_WITHIN s ago is in PostgreSQL. `finish` reports the result."""
        self._lag_checks.append((when, self.unflushed(FLUSHED_WITHIN)))

    def stop_and_flush(self) -> list[Op]:
        """Stop the load, flush every counter to PostgreSQL; the whole history."""
        ops = self.load.stop()
        self.load.mark("load stopped")
        self.stack.flush_everything()
        return ops

    def timeline(self) -> str:
        return ", ".join(f"{label} +{t - self.started:.1f} s" for label, t in self.load.events)

    def finish(
        self,
        expect: Expectation,
        fault_at: float | None,
        subset: Sequence[str] | None = None,
        name: str | None = None,
        ops: list[Op] | None = None,
    ) -> Verdict:
        """Read the final values, check the history (of `subset` of the counters). Without
        `ops`, stops the load and flushes first (see `stop_and_flush`)."""
        if ops is None:
            ops = self.stop_and_flush()
        names = list(subset) if subset is not None else self.counters
        wanted = set(names)
        pg = {c: v for c, v in self.stack.pg_values().items() if c in wanted}
        api = self.stack.api_values(names)
        verdict = check(
            name or self.name,
            [op for op in ops if op.counter in wanted],
            dict.fromkeys(names, 0),  # a fresh tenant: every counter starts at 0
            pg,
            api,
            expect,
            fault_at,
        )
        for when, behind in self._lag_checks:
            _report_lag(verdict, when, {c: pair for c, pair in behind.items() if c in wanted})
        verdict.notes.append(f"timeline: {self.timeline()}")
        verdict.notes.append(
            f"outcomes: {verdict.acknowledged} acknowledged, {verdict.failed} failed, "
            f"{verdict.unknown} unknown, over {len(names)} counters"
        )
        return verdict


def _report_lag(verdict: Verdict, when: str, behind: dict[str, tuple[int, int]]) -> None:
    limit = f"{FLUSHED_WITHIN:.0f} s"
    verdict.notes.append(f"{when}: {len(behind)} counters more than {limit} behind")
    if behind:
        sample = "; ".join(
            f"{c}: PostgreSQL {pg}, acknowledged {ack}" for c, (pg, ack) in list(behind.items())[:3]
        )
        verdict.problems.append(
            f"{when}: {len(behind)} counters not flushed within {limit}: {sample}"
        )


@contextmanager
def scenario(
    name: str,
    workdir: Path,
    cluster: RedisCluster,
    pg_dsn: str,
    *,
    flushers: Sequence[str] = ("a",),
    choose: Callable[[FaultStack], list[str]] | None = None,
) -> Iterator[Run]:
    """Service and flushers on `cluster` (started) and `pg_dsn`, load running; all stopped
    at the end, whatever happened. `choose` picks the counters (default c000…c059)."""
    stack = FaultStack(workdir, cluster, pg_dsn, flushers=flushers)
    try:
        stack.start()
        names = choose(stack) if choose else [f"c{i:03d}" for i in range(COUNTERS)]
        run = Run(name, stack, names)
        run.start()
        try:
            yield run
        finally:
            run.load.stop()
    finally:
        stack.close()


def replicated_cluster(workdir: Path, places: Sequence[Placement] = ()) -> RedisCluster:
    """3 masters with a replica each and a short node timeout (not started)."""
    return RedisCluster(
        workdir / "cluster", masters=3, node_timeout_ms=NODE_TIMEOUT_MS, replicas=1, places=places
    )
