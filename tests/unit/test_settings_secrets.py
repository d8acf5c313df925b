"""A password in the configuration never reaches an error message or a repr."""

from __future__ import annotations

import pytest

from service.settings import SECRET_VARIABLES, Settings, SettingsError

SECRET = "hunter2-Pa55"
BASE = {"COUNTER_PG_DSN": "postgresql://u@h/db", "COUNTER_REDIS_URL": "redis://h:6379/0"}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("COUNTER_PG_DSN", f"postgresql//app:{SECRET}@db:5432/counter"),  # the ':' forgotten
        ("COUNTER_PG_DSN", f"mysql://app:{SECRET}@db/counter"),
        ("COUNTER_REDIS_URL", f"http://:{SECRET}@cache:6379/0"),
        ("COUNTER_REDIS_URL", f"redis//default:{SECRET}@cache:6379/0"),
    ],
)
def test_an_invalid_secret_bearing_value_is_named_but_never_shown(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({**BASE, name: value})
    assert name in str(info.value)
    assert SECRET not in str(info.value)


def test_a_url_the_lean_client_cannot_take_is_refused_without_its_password() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({**BASE, "COUNTER_REDIS_URL": f"redis://:{SECRET}@cache:6379/0"})
    assert "COUNTER_REDIS_CLIENT=redis-py" in str(info.value) and SECRET not in str(info.value)


def test_secrets_are_not_in_the_settings_repr() -> None:
    settings = Settings.from_env(
        {
            "COUNTER_PG_DSN": f"postgresql://app:{SECRET}@db/counter",
            "COUNTER_REDIS_URL": f"redis://:{SECRET}@cache:6379/0",
            "COUNTER_REDIS_CLIENT": "redis-py",
            "COUNTER_REDIS_PASSWORD": SECRET,
        }
    )
    assert settings.redis_password == SECRET
    assert SECRET not in repr(settings)


def test_every_variable_that_may_hold_a_password_is_listed() -> None:
    assert {"COUNTER_PG_DSN", "COUNTER_REDIS_URL", "COUNTER_REDIS_PASSWORD"} <= SECRET_VARIABLES


def test_redis_credentials_and_tls_settings() -> None:
    s = Settings.from_env({**BASE, "COUNTER_REDIS_URL": "rediss://h:6380/0"})
    assert s.redis_tls and s.redis_password is None
    with pytest.raises(SettingsError, match="COUNTER_REDIS_USERNAME"):
        Settings.from_env({**BASE, "COUNTER_REDIS_USERNAME": "app"})
    with pytest.raises(SettingsError, match="COUNTER_REDIS_TLS_CA"):
        Settings.from_env(
            {**BASE, "COUNTER_REDIS_TLS": "1", "COUNTER_REDIS_TLS_CA": "/nonexistent"}
        )
    with pytest.raises(SettingsError, match="COUNTER_REDIS_TLS is not 1"):
        Settings.from_env({**BASE, "COUNTER_REDIS_TLS_CA": __file__})
    with pytest.raises(SettingsError, match="COUNTER_REDIS_TLS"):
        Settings.from_env({**BASE, "COUNTER_REDIS_TLS": "maybe"})


def test_edge_limits_have_defaults_and_bounds() -> None:
    s = Settings.from_env(BASE)
    assert (s.max_header_bytes, s.max_headers, s.header_timeout, s.body_timeout) == (
        16384,
        64,
        10,
        10,
    )
    with pytest.raises(SettingsError, match="COUNTER_HEADER_TIMEOUT"):
        Settings.from_env({**BASE, "COUNTER_HEADER_TIMEOUT": "0"})
    with pytest.raises(SettingsError, match="COUNTER_MAX_HEADER_BYTES"):
        Settings.from_env({**BASE, "COUNTER_MAX_HEADER_BYTES": "100"})
