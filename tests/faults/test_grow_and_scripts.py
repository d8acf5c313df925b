"""Scenarios d and g of issue 12: changes a client must not notice.

d. a 4th master added and slots rebalanced onto it under load (redis-cli
   --cluster add-node / rebalance --cluster-use-empty-masters): exact counts, no
   client-visible error (ASK, TRYAGAIN and MOVED are followed by the service).
   Half the counters sit in slots the rebalance moves, padded with filler keys so
   a move lasts long enough to be met: with the service's TRYAGAIN wait removed,
   this scenario fails (10 of 3,668 requests answered 503 in one run).
g. SCRIPT FLUSH on every master under load: the service sends the script again on
   NOSCRIPT (it did not run): exact counts, no error.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.history import Expectation, Verdict
from tests.faults.scenario import COUNTERS, replicated_cluster, scenario
from tests.faults.stack import FaultStack

pytestmark = pytest.mark.fault
FILLER_PER_SLOT = 5000


def _half_moving(stack: FaultStack) -> list[str]:
    """COUNTERS names, half of them in slots the rebalance will move: redis-cli takes each
    master's lowest slots first, so slots in the first tenth of a master's range go."""
    first = [
        ranges[0] for n in stack.cluster.topology() if n.role == "master" and (ranges := n.slots)
    ]
    moving: list[str] = []
    staying: list[str] = []
    i = 0
    while len(moving) < COUNTERS // 2 or len(staying) < COUNTERS - COUNTERS // 2:
        name, i = f"c{i:04d}", i + 1
        slot = stack.slot_of(name)
        soon = any(lo <= slot < lo + (hi - lo) // 10 for lo, hi in first)
        pick = moving if soon else staying
        if len(pick) < (COUNTERS // 2 if soon else COUNTERS - COUNTERS // 2):
            pick.append(name)
    return moving + staying


def test_d_adding_a_master_and_rebalancing_under_load_is_exact_and_invisible(
    tmp_path: Path, fault_pg: str, record: list[Verdict]
) -> None:
    name = "d. 4th master added, slots rebalanced"
    with (
        replicated_cluster(tmp_path) as cluster,
        scenario(name, tmp_path, cluster, fault_pg, choose=_half_moving) as run,
    ):
        moving = run.counters[: COUNTERS // 2]
        run.warm_up(4)
        # Filler makes each of those slots take ~0.1 s to move instead of a millisecond,
        # so requests meet TRYAGAIN (keys split between nodes) and sometimes ASK.
        filled = run.stack.fill_slots(moving, FILLER_PER_SLOT)
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
            f"{len(moved)} of {len(run.counters)} counters moved to the new master; "
            f"{len(moving)} slots got {FILLER_PER_SLOT} filler keys each ({filled} in all), so "
            "moving one takes long enough for requests to meet TRYAGAIN (and sometimes ASK)"
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
