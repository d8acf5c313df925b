"""A node that lacks the increment script (restarted empty, or a promoted replica) gets it.

EVALSHA answers NOSCRIPT without running anything; the client then sends the
script itself with EVAL, which runs it once and caches it on that node. Checked
on both hot-path clients, on a cluster and on one node.
"""

from __future__ import annotations

from typing import Any

from service import keys
from service.api.store import CounterStore
from service.scripts import INCR
from service.settings import Settings
from tests.builders import NewTenant
from tests.helpers import node_of


def eval_calls(node: Any) -> int:
    stats = node.info("commandstats").get("cmdstat_eval", {})
    return int(stats.get("calls", 0))


def test_noscript_is_answered_with_eval_and_the_increment_runs_once(
    settings: Settings, store: CounterStore, rclient: Any, new_tenant: NewTenant
) -> None:
    tenant, _ = new_tenant()
    assert store.increment(tenant, "scripted") == 1
    node = node_of(
        rclient, keys.bucket_keys(keys.bucket_of(tenant, "scripted", settings.buckets)).values
    )
    node.script_flush()
    assert node.script_exists(INCR.sha) == [False]
    evals = eval_calls(node)
    assert store.increment(tenant, "scripted") == 2  # once, not twice
    assert eval_calls(node) == evals + 1  # NOSCRIPT, then EVAL of the source
    assert node.script_exists(INCR.sha) == [True]  # cached again: EVALSHA from now on
    assert store.increment(tenant, "scripted") == 3
    assert eval_calls(node) == evals + 1
