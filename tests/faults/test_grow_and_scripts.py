"""Scenarios d and g of issue 12: changes a client must not notice.

d. a 4th master added and slots rebalanced onto it under load (redis-cli
   --cluster add-node / rebalance --cluster-use-empty-masters): exact counts, no
   client-visible error (ASK, TRYAGAIN and MOVED are followed by the service).
g. SCRIPT FLUSH on every master under load: the service sends the script again on
   NOSCRIPT (it did not run): exact counts, no error.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.history import Expectation, Verdict
from tests.faults.scenario import replicated_cluster, scenario

pytestmark = pytest.mark.fault


def test_d_adding_a_master_and_rebalancing_under_load_is_exact_and_invisible(
    tmp_path: Path, fault_pg: str, record: list[Verdict]
) -> None:
    name = "d. 4th master added, slots rebalanced"
    with (
        replicated_cluster(tmp_path) as cluster,
        scenario(name, tmp_path, cluster, fault_pg) as run,
    ):
        run.warm_up(4)
        t = run.load.mark("4th master added")
        new = cluster.add_master()
        run.load.mark("rebalance started")
        cluster.rebalance()
        run.load.mark("rebalanced")
        moved = [c for c, owner in run.stack.owners(run.counters).items() if owner == new]
        run.run_for(5)
        verdict = run.finish(
            Expectation(error_windows=[], bound_note="0: no data is lost by moving slots"),
            fault_at=t,
        )
        verdict.notes.append(
            f"{len(moved)} of {len(run.counters)} counters moved to the new master"
        )
    record.append(verdict)
    assert moved, "the rebalance moved none of the counters: the scenario proves nothing"
    assert verdict.passed, verdict.problems


def test_g_script_flush_under_load_is_transparent(
    tmp_path: Path, fault_pg: str, record: list[Verdict]
) -> None:
    name = "g. SCRIPT FLUSH on every master"
    with (
        replicated_cluster(tmp_path) as cluster,
        scenario(name, tmp_path, cluster, fault_pg) as run,
    ):
        run.warm_up(3)
        t = None
        for i in range(3):
            mark = run.load.mark(f"SCRIPT FLUSH #{i + 1}")
            t = t or mark
            for master in cluster.master_indices():
                assert cluster.node(master).command("SCRIPT", "FLUSH") == "OK"
            run.run_for(3)
        verdict = run.finish(Expectation(error_windows=[], bound_note="0"), fault_at=t)
    record.append(verdict)
    assert verdict.passed, verdict.problems
