"""Scenarios a–c of issue 12: Redis failovers under continuous load, counts checked.

a. graceful CLUSTER FAILOVER: nothing lost, errors only during the switch.
b. a master SIGKILLed, its replica promoted: 503 only in the window, never 500;
   lost ≤ what the replica had not received and PostgreSQL did not hold.
c. a replica paused (and its replication link cut) while its master's increments
   are flushed, the master killed, the stale replica resumed and promoted: every
   increment acknowledged after the promotion counts, final PostgreSQL = everything
   flushed before + everything after.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.history import Expectation, Outcome, Verdict
from tests.faults.scenario import (
    NODE_TIMEOUT_MS,
    Run,
    acked_max,
    replicated_cluster,
    scenario,
)

pytestmark = pytest.mark.fault


def _target(run: Run) -> tuple[int, int, list[str]]:
    """The master of the first counter, its replica, and the counters it serves."""
    owners = run.stack.owners(run.counters)
    master = owners[run.counters[0]]
    replica = run.stack.cluster.replicas_of(master)[0]
    return master, replica, [c for c in run.counters if owners[c] == master]


def _acked_after(verdict: Verdict, run: Run, names: list[str], since: float) -> None:
    ops = [op for op in run.load.ops() if op.counter in names and op.start >= since]
    verdict.notes.append(
        f"{sum(op.outcome is Outcome.OK for op in ops)} increments acknowledged on the "
        f"failed-over master's {len(names)} counters after the switch"
    )


def test_a_graceful_failover_loses_nothing_and_errs_only_during_the_switch(
    tmp_path: Path, fault_pg: str, record: list[Verdict]
) -> None:
    with (
        replicated_cluster(tmp_path) as cluster,
        scenario("a. graceful CLUSTER FAILOVER", tmp_path, cluster, fault_pg) as run,
    ):
        run.warm_up()
        master, replica, moved = _target(run)
        t = run.load.mark("CLUSTER FAILOVER")
        cluster.failover(replica)
        cluster.wait_promoted(replica, 20)
        done = run.load.mark("replica promoted")
        run.run_for(8)
        verdict = run.finish(
            Expectation(error_windows=[(t, done + 2)], bound_note="0: a coordinated switch"),
            fault_at=t,
        )
        _acked_after(verdict, run, moved, done)
    record.append(verdict)
    assert verdict.passed, verdict.problems


def test_b_a_killed_master_loses_at_most_what_its_replica_had_not_received(
    tmp_path: Path, fault_pg: str, record: list[Verdict]
) -> None:
    with (
        replicated_cluster(tmp_path) as cluster,
        scenario("b. master SIGKILLed, replica promoted", tmp_path, cluster, fault_pg) as run,
    ):
        run.warm_up()
        master, replica, on_master = _target(run)
        # SIGSTOP first, so what the replica holds can be read before the kill: from then
        # on the master acknowledges nothing more (its in-flight requests end unknown).
        t = run.load.mark("master paused, replica read, master SIGKILLed")
        cluster.pause_node(master)
        replica_has = run.stack.replica_values(replica, on_master)
        flushed = run.stack.pg_values()
        cluster.kill_node(master)
        how = cluster.promote(replica, wait_auto=10 * NODE_TIMEOUT_MS / 1000)
        done = run.load.mark(f"replica promoted ({how})")
        run.run_for(10)
        ops = run.stop_and_flush()
        # Acknowledged by the old master (started before the pause) beyond what survived it.
        bound = sum(
            1
            for op in ops
            if op.counter in on_master
            and op.outcome is Outcome.OK
            and op.start < t
            and (op.value or 0) > max(replica_has[op.counter], flushed.get(op.counter, 0))
        )
        verdict = run.finish(
            Expectation(
                max_lost=bound,
                duplicates_allowed=True,
                error_windows=[(t, done + 3)],
                bound_note=(
                    f"{bound}: increments the old master acknowledged beyond both what its "
                    "replica held and what PostgreSQL held when it was killed"
                ),
            ),
            fault_at=t,
            ops=ops,
        )
        _acked_after(verdict, run, on_master, done)
    record.append(verdict)
    assert verdict.passed, verdict.problems


def test_c_increments_after_promoting_a_stale_replica_all_count(
    tmp_path: Path, fault_pg: str, record: list[Verdict]
) -> None:
    name = "c. stale replica promoted after a flush"
    with (
        replicated_cluster(tmp_path) as cluster,
        scenario(name, tmp_path, cluster, fault_pg) as run,
    ):
        run.warm_up(3)
        master, replica, on_master = _target(run)
        cluster.pause_node(replica)
        # Paused alone, the replica would still find everything in its socket buffer on
        # resuming: the kernel keeps accepting what the master writes. Cut the link too,
        # so what the master takes from now on never reaches it (a partitioned replica).
        cut = cluster.cut_replication_link(replica, cluster.nodes[master][1])
        run.load.mark(f"replica paused (SIGSTOP), its replication link cut ({cut} socket)")
        run.run_for(6)
        run.load.pause()
        run.load.mark("clients paused")
        run.stack.wait_flushed(acked_max(run.load.ops()))
        run.load.mark("everything acknowledged is flushed")
        t = run.load.mark("master SIGKILLed")
        cluster.kill_node(master)
        cluster.resume_node(replica)
        run.load.mark("replica resumed")
        how = cluster.promote(replica, wait_auto=4 * NODE_TIMEOUT_MS / 1000)
        done = run.load.mark(f"stale replica promoted ({how})")
        run.load.resume()
        run.run_for(10)
        verdict = run.finish(
            Expectation(
                max_lost=0,
                duplicates_allowed=True,
                error_windows=[(t, done + 3)],
                bound_note="0: everything acknowledged before the kill had been flushed",
            ),
            fault_at=t,
        )
        _acked_after(verdict, run, on_master, done)
    record.append(verdict)
    assert verdict.passed, verdict.problems
