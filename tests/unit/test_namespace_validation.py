"""The namespace rule: 1–64 chars of [A-Za-z0-9_-], matched on the whole string."""

import pytest

from service.keys import is_valid_namespace, is_valid_tenant

VALID = ["a", "Z", "0", "-", "_", "page-views", "a_b-C9", "x" * 64]
INVALID = [
    "",
    "x" * 65,
    "a.b",
    "..",
    "a b",
    "a/b",
    "a\\b",
    "a\x00",
    "\x00",
    "café",
    "ünïcode",
    "a%2Fb",
    "a%2E",
    "a%20b",
    "a%00",
    "page-views\n",
    "page-views ",
    " page-views",
    "a:b",
    "a+b",
    "emoji😀",
]


@pytest.mark.parametrize("namespace", VALID)
def test_valid_namespaces_are_accepted(namespace: str) -> None:
    assert is_valid_namespace(namespace)


@pytest.mark.parametrize("namespace", INVALID)
def test_invalid_namespaces_are_rejected(namespace: str) -> None:
    assert not is_valid_namespace(namespace)


def test_a_valid_prefix_does_not_make_a_valid_namespace() -> None:
    assert not is_valid_namespace("valid-prefix/../etc")
    assert not is_valid_namespace("ok\nnot-ok")


def test_tenant_names_are_limited_to_32_chars() -> None:
    assert is_valid_tenant("t" * 32)
    assert not is_valid_tenant("t" * 33)
    assert not is_valid_tenant("a/b")
