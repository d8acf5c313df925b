"""Key scopes (403 beyond them) and per-key rate limits (429 with headers, nothing changed),
through the API against real Redis (cluster and single) and PostgreSQL."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from service.api.auth import require_scope
from service.api.errors import Forbidden
from service.api.keyset import KeySet
from service.apikeys import Grant, create_key, update_limits
from service.keys import rate_key
from tests.builders import NewTenant
from tests.helpers import wait_for_key

MISC = "/v1/misc/counter/"
POLICY = re.compile(r'"key";q=(\d+);w=(\d+)')
STATE = re.compile(r'"key";r=(\d+);t=(\d+)')


def hdr(key: str) -> dict[str, str]:
    return {"requiems-api-key": key}


def made(pg_dsn: str, key_set: KeySet, tenant: str, **options: Any) -> tuple[int, str]:
    """A key of ``tenant`` made now, once this process's key set holds it."""
    record, key = create_key(pg_dsn, tenant, **options)
    wait_for_key(key_set, key)
    return record.id, key


def fields(pattern: re.Pattern[str], header: str) -> tuple[str, ...]:
    match = pattern.fullmatch(header)
    assert match is not None, header
    return match.groups()


def grant_of(key_set: KeySet, key_id: int) -> Grant:
    return next(g for g in (key_set.keys or {}).values() if g.key_id == key_id)


def value(client: Any, key: str, namespace: str) -> int:
    resp = client.simulate_get(MISC + namespace, headers=hdr(key))
    assert resp.status_code == 200, resp.text
    return int(resp.json["data"]["value"])


def test_a_read_key_reads_and_gets_403_on_increment_changing_nothing(
    client: Any, pg_dsn: str, key_set: KeySet, new_tenant: NewTenant
) -> None:
    tenant, writer = new_tenant()
    _, reader = made(pg_dsn, key_set, tenant, scope="read")
    assert client.simulate_post(MISC + "embedded", headers=hdr(writer)).status_code == 200
    resp = client.simulate_post(MISC + "embedded", headers=hdr(reader))
    assert resp.status_code == 403 and resp.json["error"] == "forbidden", resp.text
    assert "read" in resp.json["message"]
    assert value(client, reader, "embedded") == 1  # read allowed; the POST changed nothing


def test_set_and_delete_need_an_admin_key(
    client: Any, pg_dsn: str, key_set: KeySet, new_tenant: NewTenant
) -> None:
    tenant, _ = new_tenant()
    _, writer = made(pg_dsn, key_set, tenant, scope="increment")
    _, admin = made(pg_dsn, key_set, tenant, scope="admin")
    assert client.simulate_post(MISC + "owned", headers=hdr(writer)).status_code == 200
    for method in (client.simulate_put, client.simulate_delete):
        resp = method(MISC + "owned", headers=hdr(writer), json={"value": 7})
        assert resp.status_code == 403 and resp.json["error"] == "forbidden", resp.text
    assert value(client, writer, "owned") == 1  # nothing changed
    resp = client.simulate_put(MISC + "owned", headers=hdr(admin), json={"value": 7})
    assert resp.status_code == 200 and value(client, writer, "owned") == 7


@pytest.mark.parametrize("scope", ["increment", "admin"])
def test_increment_and_admin_keys_read_and_increment(
    client: Any, pg_dsn: str, key_set: KeySet, new_tenant: NewTenant, scope: str
) -> None:
    tenant, _ = new_tenant()
    _, key = made(pg_dsn, key_set, tenant, scope=scope)
    assert client.simulate_post(MISC + "s", headers=hdr(key)).json["data"]["value"] == 1
    assert value(client, key, "s") == 1


def test_the_scope_check_orders_read_increment_admin() -> None:
    def grant(scope: str) -> Grant:
        return Grant(1, "t", scope, None, None)

    require_scope(grant("admin"), "admin")
    require_scope(grant("increment"), "read")
    for scope, needed in (("read", "increment"), ("increment", "admin"), ("read", "admin")):
        with pytest.raises(Forbidden):
            require_scope(grant(scope), needed)


def test_over_the_limit_is_429_with_headers_and_changes_nothing(
    client: Any, rclient: Any, pg_dsn: str, key_set: KeySet, new_tenant: NewTenant
) -> None:
    tenant, unlimited = new_tenant()
    key_id, limited = made(pg_dsn, key_set, tenant, rate=0.5, burst=3)
    remaining = []
    for _ in range(3):  # the burst
        resp = client.simulate_post(MISC + "limited", headers=hdr(limited))
        assert resp.status_code == 200, resp.text
        assert fields(POLICY, resp.headers["ratelimit-policy"]) == ("3", "6")
        remaining.append(int(fields(STATE, resp.headers["ratelimit"])[0]))
    assert remaining == [2, 1, 0]
    state_before = rclient.get(rate_key(key_id))
    for method in ("POST", "GET"):
        resp = client.simulate_request(method, MISC + "limited", headers=hdr(limited))
        assert resp.status_code == 429 and resp.json["error"] == "rate_limited", resp.text
        assert 1 <= int(resp.headers["retry-after"]) <= 2  # 2 s per request at 0.5/s
        assert fields(STATE, resp.headers["ratelimit"])[0] == "0"
        assert "ratelimit-policy" in resp.headers
    assert value(client, unlimited, "limited") == 3  # the refused POST counted nothing
    assert rclient.get(rate_key(key_id)) == state_before  # and left the limiter as it was
    assert 0 < rclient.pttl(rate_key(key_id)) <= 8000  # expires once the burst is full again


def test_a_refused_key_is_admitted_again_after_retry_after(
    client: Any, pg_dsn: str, key_set: KeySet, new_tenant: NewTenant
) -> None:
    tenant, _ = new_tenant()
    # One request per 2 s: the second comes well within that even on a loaded machine.
    _, key = made(pg_dsn, key_set, tenant, rate=0.5, burst=1)
    assert client.simulate_post(MISC + "r", headers=hdr(key)).status_code == 200
    refused = client.simulate_post(MISC + "r", headers=hdr(key))
    assert refused.status_code == 429
    time.sleep(int(refused.headers["retry-after"]))
    assert client.simulate_post(MISC + "r", headers=hdr(key)).json["data"]["value"] == 2


def test_unlimited_keys_get_no_headers_and_leave_no_state(
    client: Any, rclient: Any, pg_dsn: str, key_set: KeySet, new_tenant: NewTenant
) -> None:
    tenant, _ = new_tenant()
    key_id, key = made(pg_dsn, key_set, tenant)
    for _ in range(5):
        resp = client.simulate_post(MISC + "free", headers=hdr(key))
        assert resp.status_code == 200 and "ratelimit" not in resp.headers
    assert rclient.exists(rate_key(key_id)) == 0


def test_updating_a_limit_applies_within_about_a_second(
    client: Any, pg_dsn: str, key_set: KeySet, new_tenant: NewTenant
) -> None:
    tenant, _ = new_tenant()
    key_id, key = made(pg_dsn, key_set, tenant, rate=0.1, burst=1)
    assert client.simulate_post(MISC + "u", headers=hdr(key)).status_code == 200
    assert client.simulate_post(MISC + "u", headers=hdr(key)).status_code == 429
    assert update_limits(pg_dsn, key_id, None, None)  # no flags: unlimited
    deadline = time.monotonic() + 5
    while grant_of(key_set, key_id).rate is not None:
        assert time.monotonic() < deadline, "the new limit did not arrive"
        time.sleep(0.01)
    for _ in range(5):
        assert client.simulate_post(MISC + "u", headers=hdr(key)).status_code == 200
    with pytest.raises(ValueError):
        update_limits(pg_dsn, key_id, None, 5)  # a burst without a rate means nothing
