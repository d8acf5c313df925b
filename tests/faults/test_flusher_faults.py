"""Scenario f of issue 12: the flusher killed, and stopped while it holds partitions.

Two `counter-flusher` processes share the partitions (one advisory lock each).
f1. one SIGKILLed under load: its sessions, and so its locks, end with it; the
    other flushes everything meanwhile, and counts are exact.
f2. one SIGSTOPped for 10 s while it holds a partition's lock (caught in the act
    through pg_locks): a stuck but connected holder must not starve that
    partition for as long as it is stuck; exact afterwards. Checked at the end of
    the 10 s: everything acknowledged more than FLUSHED_WITHIN (4 s) earlier is in
    PostgreSQL, so the partition must be taken over within about 6 s of the stop
    (a longer lease needs a longer stop here).
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from tests.faults.history import Expectation, Verdict
from tests.faults.scenario import QUICK, replicated_cluster, scenario
from tests.faults.stack import FaultStack

pytestmark = pytest.mark.fault


def _stop_holding_a_lock(stack: FaultStack, name: str, tries: int = 300) -> list[int]:
    """SIGSTOP flusher `name` at a moment it holds a partition lock; the partitions.
    Stops it anyway (holding nothing) if that moment never comes."""
    proc = stack.flushers[name]
    for _ in range(tries):
        proc.send_signal(signal.SIGSTOP)
        held = stack.advisory_locks_of(name)
        if held:
            return held
        proc.send_signal(signal.SIGCONT)
        time.sleep(random.uniform(0.0, 0.05))
    proc.send_signal(signal.SIGSTOP)
    return []


def test_f1_a_killed_flusher_partitions_are_flushed_by_the_other(
    tmp_path: Path, fault_pg: str, record: list[Verdict]
) -> None:
    name = "f1. flusher SIGKILLed (one of two)"
    with (
        replicated_cluster(tmp_path) as cluster,
        scenario(name, tmp_path, cluster, fault_pg, flushers=("a", "b")) as run,
    ):
        run.warm_up(4)
        t = run.load.mark("flusher a SIGKILLed")
        run.stack.flushers["a"].kill()
        run.stack.flushers["a"].wait(10)
        run.run_for(8)
        run.expect_flushed("8 s after flusher a died (partitions taken over?)")
        run.stack.start_flusher("a")
        run.load.mark("flusher a restarted")
        run.run_for(4)
        final = run.finish(Expectation(error_windows=[], bound_note="0"), fault_at=t)
    record.append(final)
    assert final.passed, final.problems


def test_f2_a_stopped_flusher_does_not_starve_the_partitions_it_holds(
    tmp_path: Path, fault_pg: str, record: list[Verdict]
) -> None:
    stop_for = 6.0 if QUICK else 10.0
    name = f"f2. flusher SIGSTOPped {stop_for:.0f} s holding a partition"
    with (
        replicated_cluster(tmp_path) as cluster,
        scenario(name, tmp_path, cluster, fault_pg, flushers=("a", "b")) as run,
    ):
        run.warm_up(4)
        held = _stop_holding_a_lock(run.stack, "a")
        t = run.load.mark(f"flusher a SIGSTOPped holding partitions {held}")
        time.sleep(stop_for)
        run.expect_flushed(f"flusher a stopped {stop_for:.0f} s (partitions {held} taken over?)")
        run.stack.flushers["a"].send_signal(signal.SIGCONT)
        run.load.mark("flusher a resumed (SIGCONT)")
        run.run_for(4)
        final = run.finish(Expectation(error_windows=[], bound_note="0"), fault_at=t)
        if not held:
            final.notes.append("flusher a was never caught holding a lock: stopped holding none")
    record.append(final)
    assert final.passed, final.problems
