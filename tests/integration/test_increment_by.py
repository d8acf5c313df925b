"""Increment by N (issue 15, item 1): ``?by=N`` or ``{"by": N}``; anything else is a 400
that changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.builders import NewTenant
from tests.integration.test_api_contract import MISC, TECH, assert_error, hdr


def test_by_in_the_query_or_the_body_adds_n(client: Any, new_tenant: NewTenant) -> None:
    _, key = new_tenant()
    assert client.simulate_post(MISC + "n", headers=hdr(key), params={"by": "5"}).json["data"] == {
        "namespace": "n",
        "value": 5,
    }
    resp = client.simulate_post(TECH + "n", headers=hdr(key), json={"by": 1_000_000_000})
    assert resp.json["data"]["value"] == 1_000_000_005
    both = client.simulate_post(MISC + "n", headers=hdr(key), params={"by": "2"}, json={"by": 2})
    assert both.json["data"]["value"] == 1_000_000_007
    assert client.simulate_post(MISC + "n", headers=hdr(key)).json["data"]["value"] == 1_000_000_008
    empty = client.simulate_post(MISC + "n", headers=hdr(key), json={})
    assert empty.json["data"]["value"] == 1_000_000_009


def test_by_on_a_new_counter_hydrates_then_adds(
    client: Any, store: Any, new_tenant: NewTenant
) -> None:
    """The second call of incr.lua (after hydration) adds ``by`` too, not 1."""
    _, key = new_tenant()
    assert (
        client.simulate_post(MISC + "fresh", headers=hdr(key), json={"by": 7}).json["data"]["value"]
        == 7
    )


@pytest.mark.parametrize(
    ("params", "body"),
    [
        ({"by": "0"}, None),
        ({"by": "-1"}, None),
        ({"by": "1.5"}, None),
        ({"by": "+3"}, None),
        ({"by": "1000000001"}, None),
        ({"by": "x"}, None),
        ({"by": ""}, None),
        (None, b'{"by": 0}'),
        (None, b'{"by": -4}'),
        (None, b'{"by": 2.0}'),
        (None, b'{"by": true}'),
        (None, b'{"by": "3"}'),
        (None, b'{"by": 1000000001}'),
        (None, b'{"by": null}'),
        (None, b"{not json"),
        (None, b"\t"),  # whitespace alone is not JSON (found by schemathesis)
        (None, b" \r\n"),
        (None, b"[1]"),
        (None, b"3"),
        ({"by": "2"}, b'{"by": 3}'),
        ("by=1&by=1", None),
    ],
)
def test_a_bad_by_is_400_and_changes_nothing(
    client: Any, new_tenant: NewTenant, params: Any, body: bytes | None
) -> None:
    _, key = new_tenant()
    client.simulate_post(MISC + "c", headers=hdr(key))
    kwargs: dict[str, Any] = {"headers": hdr(key), "body": body}
    if isinstance(params, str):
        kwargs["query_string"] = params
    else:
        kwargs["params"] = params
    assert_error(client.simulate_post(MISC + "c", **kwargs), 400, "bad_request")
    assert client.simulate_get(MISC + "c", headers=hdr(key)).json["data"]["value"] == 1
