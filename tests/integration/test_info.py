"""Info (issue 15, item 5): the value, when the counter was created and updated, and
what PostgreSQL holds and when it was flushed."""

from __future__ import annotations

import re
from typing import Any

from service.settings import Settings
from tests.builders import NewTenant
from tests.flush_helpers import flush
from tests.integration.test_api_contract import MISC, TECH, assert_error, hdr

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def test_info_follows_a_counter_from_redis_to_postgresql(
    client: Any, settings: Settings, new_tenant: NewTenant
) -> None:
    _, key = new_tenant()
    never = client.simulate_get(MISC + "c/info", headers=hdr(key)).json["data"]
    assert never == {
        "namespace": "c",
        "value": 0,
        "epoch": 0,
        "created_at": None,
        "updated_at": None,
        "pending_since": None,
        "stored": None,
    }
    client.simulate_post(MISC + "c", headers=hdr(key), params={"by": "4"})
    pending = client.simulate_get(TECH + "c/info", headers=hdr(key)).json["data"]
    assert pending["value"] == 4 and pending["stored"] is None and pending["created_at"] is None
    assert (
        TS.fullmatch(pending["pending_since"]) and pending["updated_at"] == pending["pending_since"]
    )
    flush(settings)
    done = client.simulate_get(MISC + "c/info", headers=hdr(key)).json["data"]
    assert done["value"] == 4 and done["pending_since"] is None
    assert done["stored"]["value"] == 4 and done["stored"]["epoch"] == 0
    assert TS.fullmatch(done["created_at"]) and done["updated_at"] == done["stored"]["flushed_at"]
    client.simulate_put(MISC + "c", headers=hdr(key), json={"value": 1})
    after = client.simulate_get(MISC + "c/info", headers=hdr(key)).json["data"]
    assert (after["value"], after["epoch"], after["stored"]["value"]) == (1, 1, 4)


def test_info_needs_a_key_and_a_valid_namespace(client: Any, new_tenant: NewTenant) -> None:
    _, key = new_tenant()
    assert_error(client.simulate_get(MISC + "c/info"), 401, "unauthorized")
    assert_error(client.simulate_get(MISC + "a.b/info", headers=hdr(key)), 400, "bad_request")
    assert_error(client.simulate_get(MISC + "a/b/info", headers=hdr(key)), 400, "bad_request")
    assert_error(client.simulate_post(MISC + "a/info", headers=hdr(key)), 400, "bad_request")
