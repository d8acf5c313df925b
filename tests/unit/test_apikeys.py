"""API key shape, limits and the rate-limit script's key: rules checked before any backend."""

from __future__ import annotations

import pytest

from service import scripts
from service.apikeys import check_limits, is_well_formed, new_key
from service.keys import rate_key


def test_new_keys_are_well_formed_and_near_misses_are_not() -> None:
    key = new_key()
    assert is_well_formed(key)
    for bad in (key[:-1], key + "A", "ck_" + "!" * 43, "CK_" + key[3:], "", "x" * 4096):
        assert not is_well_formed(bad)
    assert not is_well_formed(key[:-1] + "é")  # same length, outside the alphabet


def test_limits_default_the_burst_to_one_second_and_refuse_nonsense() -> None:
    assert check_limits(None, None) == (None, None)
    assert check_limits(20, None) == (20, 20)
    assert check_limits(0.5, None) == (0.5, 1)
    assert check_limits(20, 40) == (20, 40)
    for rate, burst in ((None, 5), (0, None), (-1, 2), (float("nan"), 1), (2e6, 1), (1, 0)):
        with pytest.raises(ValueError):
            check_limits(rate, burst)


def test_the_rate_limit_script_runs_on_the_keys_own_slot() -> None:
    assert scripts.RATELIMIT.per_key and scripts.RATELIMIT.roles == ()
    assert rate_key(42) == "rl:{42}"  # the key id is the hash tag: a slot of its own


def test_a_script_mixing_key_kinds_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    source = "-- KEYS[1] = limit rl:{id}\n-- KEYS[2] = values c:{b}:v\nreturn 1"
    monkeypatch.setattr(scripts, "lua_source", lambda name: source)
    with pytest.raises(ValueError, match="rl:"):
        scripts.Script.load("mixed")
