"""The bucket hash is part of the storage format: it must never change."""

import pytest
import xxhash

from service.keys import bucket_keys, bucket_of, member, split_member


def test_xxh64_matches_the_published_empty_string_vector() -> None:
    # XXH64("", seed=0) == 0xEF46DB3751D8E999 (xxHash reference test vector)
    assert xxhash.xxh64_intdigest(b"") == 0xEF46DB3751D8E999


def test_bucket_of_is_xxh64_of_tenant_slash_namespace_mod_n() -> None:
    # Fixed vectors: a change here would mis-route every stored counter.
    assert bucket_of("acme", "page-views", 4096) == 2961
    assert bucket_of("t", "a", 4096) == 1090
    assert bucket_of("dev", "x", 4096) == 2381
    assert bucket_of("acme", "page-views", 16) == 5323476536923081617 % 16


def test_tenants_with_the_same_namespace_are_different_members() -> None:
    assert member("a", "ns") != member("b", "ns")
    assert split_member(member("acme", "page-views")) == ("acme", "page-views")


def test_every_key_of_a_bucket_shares_one_hash_tag() -> None:
    keys = bucket_keys(2961)
    assert all("{2961}" in k for k in keys)
    assert len(set(keys)) == len(keys) == 5


def test_the_hot_paths_member_hash_is_the_same_bucket() -> None:
    from service.keys import bucket_of_member

    assert bucket_of_member(member("acme", "page-views"), 4096) == 2961


def test_a_batchs_member_and_bucket_are_the_single_paths() -> None:
    # service/api/batch.py builds members from the prefix and hashes them with DIGEST.
    from service.keys import DIGEST, member_prefix

    name = member_prefix("acme") + "page-views"
    assert name == member("acme", "page-views")
    assert DIGEST(name.encode()) % 4096 == bucket_of("acme", "page-views", 4096) == 2961


def test_each_script_takes_the_bucket_keys_in_the_order_its_header_names() -> None:
    from service import scripts

    k = bucket_keys(7)
    assert scripts.INCR.keys(k) == (k.values, k.dirty, k.epochs, k.lineage, k.base)
    assert scripts.SNAPSHOT.keys(k) == (k.dirty, k.values, k.epochs, k.lineage)
    assert scripts.CLEAR_DIRTY.keys(k) == (k.dirty, k.values, k.epochs, k.lineage)
    assert scripts.SETTLE.keys(k) == (k.lineage, k.values, k.base, k.dirty, k.epochs)
    assert scripts.REOPEN.keys(k) == (k.lineage, k.values, k.base, k.dirty)


def test_a_script_header_without_bucket_keys_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from service import scripts

    monkeypatch.setattr(scripts, "lua_source", lambda name: "-- KEYS[1] = some key\nreturn 1")
    with pytest.raises(ValueError, match="header"):
        scripts.Script.load("broken")
