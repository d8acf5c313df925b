"""Settings.from_env: defaults, and one clear error naming the bad variable."""

import os

import pytest

from service.settings import Settings, SettingsError

BASE = {"COUNTER_PG_DSN": "postgresql://u@h/db", "COUNTER_REDIS_URL": "redis://h:6379/0"}


def test_defaults_follow_the_design() -> None:
    s = Settings.from_env(BASE)
    assert (s.buckets, s.partitions, s.flush_interval) == (4096, 16, 1.0)
    assert s.worker_class == "meinheld" and not s.cluster
    assert s.workers == (os.cpu_count() or 1)  # one per core
    assert s.keys_resync == 60.0


def test_from_env_and_the_dataclass_have_the_same_defaults() -> None:
    # Each default is written once, on the dataclass: the two can never disagree.
    built = Settings(pg_dsn=BASE["COUNTER_PG_DSN"], redis_url=BASE["COUNTER_REDIS_URL"])
    assert Settings.from_env(BASE) == built


def test_cluster_nodes_are_parsed() -> None:
    env = {"COUNTER_PG_DSN": "postgresql://u@h/db", "COUNTER_REDIS_NODES": "a:1, b:2,[::1]:3"}
    s = Settings.from_env(env)
    assert s.cluster and s.redis_nodes == (("a", 1), ("b", 2), ("::1", 3))


@pytest.mark.parametrize(
    ("extra", "name"),
    [
        ({"COUNTER_BUCKETS": "0"}, "COUNTER_BUCKETS"),
        ({"COUNTER_BUCKETS": "65537"}, "COUNTER_BUCKETS"),
        ({"COUNTER_BUCKETS": "many"}, "COUNTER_BUCKETS"),
        ({"COUNTER_WORKERS": "-1"}, "COUNTER_WORKERS"),
        ({"COUNTER_WORKER_CLASS": "tornado"}, "COUNTER_WORKER_CLASS"),
        ({"COUNTER_FLUSH_INTERVAL": "soon"}, "COUNTER_FLUSH_INTERVAL"),
        ({"COUNTER_BIND": "8080"}, "COUNTER_BIND"),
        ({"COUNTER_REDIS_URL": "http://x"}, "COUNTER_REDIS_URL"),
        ({"COUNTER_PG_DSN": "nonsense"}, "COUNTER_PG_DSN"),
        ({"COUNTER_LOG_LEVEL": "loud"}, "COUNTER_LOG_LEVEL"),
        ({"COUNTER_KEYS_RESYNC": "0"}, "COUNTER_KEYS_RESYNC"),
        ({"COUNTER_AUTH_FAILURES_PER_S": "-1"}, "COUNTER_AUTH_FAILURES_PER_S"),
        ({"COUNTER_AUTH_FAILURE_DELAY": "61"}, "COUNTER_AUTH_FAILURE_DELAY"),
    ],
)
def test_a_bad_value_names_its_variable(extra: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({**BASE, **extra})


def test_the_bucket_count_goes_up_to_65536() -> None:
    assert Settings.from_env({**BASE, "COUNTER_BUCKETS": "65536"}).buckets == 65536


def test_missing_dsn_is_reported() -> None:
    with pytest.raises(SettingsError, match="COUNTER_PG_DSN is required"):
        Settings.from_env({"COUNTER_REDIS_URL": "redis://h:1/0"})


def test_redis_must_be_configured_exactly_once() -> None:
    with pytest.raises(SettingsError, match="COUNTER_REDIS_NODES"):
        Settings.from_env({"COUNTER_PG_DSN": "postgresql://u@h/db"})
    with pytest.raises(SettingsError, match="both set"):
        Settings.from_env({**BASE, "COUNTER_REDIS_NODES": "a:1"})


def test_the_lean_client_is_the_default_and_needs_a_plain_url() -> None:
    assert Settings.from_env(BASE).redis_client == "lean"
    with pytest.raises(SettingsError, match="COUNTER_REDIS_CLIENT=redis-py"):
        Settings.from_env({**BASE, "COUNTER_REDIS_URL": "redis://:secret@h:6379/0"})
    with pytest.raises(SettingsError, match="COUNTER_REDIS_CLIENT=redis-py"):
        Settings.from_env({**BASE, "COUNTER_REDIS_URL": "redis://h:6379/3"})
    env = {
        **BASE,
        "COUNTER_REDIS_URL": "redis://:secret@h:6379/3",
        "COUNTER_REDIS_CLIENT": "redis-py",
    }
    assert Settings.from_env(env).redis_client == "redis-py"


def test_the_failed_auth_tarpit_is_configured_and_can_be_turned_off() -> None:
    s = Settings.from_env(
        {**BASE, "COUNTER_AUTH_FAILURES_PER_S": "0", "COUNTER_AUTH_FAILURE_DELAY": "3.5"}
    )
    assert (s.auth_failures_per_s, s.auth_failure_delay) == (0.0, 3.5)
    assert (
        Settings.from_env(BASE).auth_failures_per_s,
        Settings.from_env(BASE).auth_failure_delay,
    ) == (50.0, 2.0)
