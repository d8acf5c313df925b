"""A write whose outcome is unknown answers 503 and is never re-sent (no double count)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest

from service import keys
from service.errors import OutcomeUnknown
from service.settings import Settings
from tests.builders import NewTenant, make_store
from tests.helpers import keep_busy, node_of


def test_a_timed_out_increment_is_applied_at_most_once(
    settings: Settings, rclient: Any, new_tenant: NewTenant
) -> None:
    tenant, _ = new_tenant()
    store = make_store(replace(settings, redis_timeout=0.2))
    assert store.increment(tenant, "slow") == 1
    bucket = keys.bucket_of(tenant, "slow", store.n_buckets)
    node = node_of(rclient, keys.bucket_keys(bucket).values)
    # Keep the node busy in a script: our increment waits in its socket buffer, the
    # client times out, and the node runs the buffered increment when it is free.
    busy = keep_busy(node, 1500)
    with pytest.raises(OutcomeUnknown):
        store.increment(tenant, "slow")
    assert busy.is_alive()  # gave up while the node was still busy: did not wait it out
    busy.join()
    time.sleep(0.2)
    assert store.get(tenant, "slow") == 2  # exactly once: a resend would have made it 3 or more
