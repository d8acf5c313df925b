"""Namespaces are scoped per tenant: no request can see or change another tenant's."""

from __future__ import annotations

from typing import Any

from service.api.keyset import KeySet
from tests.builders import NewTenant
from tests.helpers import wait_for_key


def test_tenants_are_isolated_both_ways(client: Any, new_tenant: NewTenant) -> None:
    _, key_a = new_tenant("a")
    _, key_b = new_tenant("b")
    path = "/v1/misc/counter/page-views"
    for _ in range(3):
        client.simulate_post(path, headers={"requiems-api-key": key_a})
    assert client.simulate_get(path, headers={"requiems-api-key": key_b}).json["data"]["value"] == 0
    assert (
        client.simulate_post(path, headers={"requiems-api-key": key_b}).json["data"]["value"] == 1
    )
    assert client.simulate_get(path, headers={"requiems-api-key": key_a}).json["data"]["value"] == 3
    assert client.simulate_get(path, headers={"requiems-api-key": key_b}).json["data"]["value"] == 1


def test_two_keys_of_one_tenant_share_its_counters(
    client: Any, pg_dsn: str, new_tenant: NewTenant, key_set: KeySet
) -> None:
    from service.apikeys import create_key

    tenant, key1 = new_tenant()
    key2 = create_key(pg_dsn, tenant)[1]
    wait_for_key(key_set, key2)
    path = "/v1/misc/counter/shared"
    client.simulate_post(path, headers={"requiems-api-key": key1})
    assert client.simulate_post(path, headers={"requiems-api-key": key2}).json["data"]["value"] == 2
