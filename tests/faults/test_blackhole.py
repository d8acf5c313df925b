"""Scenario e of issue 12: a Redis master, then PostgreSQL, black-holed (no RST) under load.

The node sits in a network namespace (`devstack.netns`) whose veth drops every
packet while silenced: the service sees timeouts only, as with a dead switch.
e1. a Redis master black-holed until its replica takes over, then restored (it
    rejoins as a replica): counters on the other masters exact; its own lose at
    most what neither its replica nor PostgreSQL had received.
e2. PostgreSQL black-holed for 8 s: nothing lost anywhere, errors only during
    the outage and shortly after, and recovery without restarting anything.
Both need root and iproute2.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack import Placement, PostgresServer
from devstack.netns import Namespace, unavailable_reason
from tests.faults.history import Expectation, Outcome, Verdict
from tests.faults.scenario import NODE_TIMEOUT_MS, replicated_cluster, scenario, seconds

pytestmark = [
    pytest.mark.fault,
    pytest.mark.skipif(unavailable_reason() is not None, reason=f"{unavailable_reason()}"),
]
GRACE = 10.0  # s after the restore during which errors still count as the outage's


def test_e1_a_black_holed_master_costs_only_its_own_counters_and_recovers(
    tmp_path: Path, fault_pg: str, record: list[Verdict]
) -> None:
    name = "e1. Redis master black-holed"
    with Namespace.create() as ns:
        # The namespace node announces its own address; the host nodes bind and announce
        # their side of the veth, which the namespace node reaches and 127.0.0.1 is not.
        inside = Placement(host=ns.ns_addr, bind=(ns.ns_addr,), announce=True, wrap=ns.wrap)
        outside = Placement(host=ns.host_addr, bind=("127.0.0.1", ns.host_addr), announce=True)
        with replicated_cluster(tmp_path, places=[inside] + [outside] * 5) as cluster:
            if cluster.role(0) != "master":  # redis-cli chose the roles
                cluster.failover(0)
                cluster.wait_promoted(0, 20)
            with scenario(name, tmp_path, cluster, fault_pg) as run:
                run.warm_up()
                owners = run.stack.owners(run.counters)
                on_node = [c for c in run.counters if owners[c] == 0]
                others = [c for c in run.counters if owners[c] != 0]
                replica = cluster.replicas_of(0)[0]
                t = run.load.mark("master black-holed")
                ns.silence()
                cluster.set_cut_off(0, True)
                replica_has = run.stack.replica_values(replica, on_node)
                flushed = run.stack.pg_values()
                how = cluster.promote(replica, wait_auto=10 * NODE_TIMEOUT_MS / 1000)
                run.load.mark(f"replica promoted ({how})")
                run.run_for(4)
                ns.restore()
                cluster.set_cut_off(0, False)
                restored = run.load.mark("old master reachable again")
                run.run_for(8)
                run.expect_flushed("8 s after the restore")
                ops = run.stop_and_flush()
                bound = sum(
                    1
                    for op in ops
                    if op.counter in on_node
                    and op.outcome is Outcome.OK
                    and op.start < t
                    and (op.value or 0) > max(replica_has[op.counter], flushed.get(op.counter, 0))
                )
                window = [(t, restored + GRACE)]
                rest = run.finish(
                    Expectation(error_windows=window, bound_note="0: their masters never failed"),
                    fault_at=t,
                    subset=others,
                    name=f"{name}: counters on the other masters",
                    ops=ops,
                )
                own = run.finish(
                    Expectation(
                        max_lost=bound,
                        duplicates_allowed=True,
                        error_windows=window,
                        bound_note=(
                            f"{bound}: acknowledged before the cut beyond what the replica and "
                            "PostgreSQL held"
                        ),
                    ),
                    fault_at=t,
                    subset=on_node,
                    name=f"{name}: its own counters",
                    ops=ops,
                )
    record += [rest, own]
    assert rest.passed, rest.problems
    assert own.passed, own.problems


def test_e2_black_holed_postgresql_loses_nothing_and_recovers(
    tmp_path: Path, record: list[Verdict]
) -> None:
    name = f"e2. PostgreSQL black-holed {seconds(8):.0f} s"
    with Namespace.create() as ns:
        pg = PostgresServer(host=ns.ns_addr, wrap=ns.wrap)
        try:
            dsn = pg.start()
            with (
                replicated_cluster(tmp_path) as cluster,
                scenario(name, tmp_path, cluster, dsn) as run,
            ):
                run.warm_up()
                t = run.load.mark("PostgreSQL black-holed")
                ns.silence()
                run.run_for(8)
                ns.restore()
                restored = run.load.mark("PostgreSQL reachable again")
                run.run_for(8)
                run.expect_flushed("8 s after the restore (the flusher recovered?)")
                verdict = run.finish(
                    Expectation(error_windows=[(t, restored + GRACE)], bound_note="0"),
                    fault_at=t,
                )
        finally:
            pg.cleanup()
    record.append(verdict)
    assert verdict.passed, verdict.problems
