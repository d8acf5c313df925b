"""The flusher's own settings: metrics port (0 = off) and niceness; bad values named."""

from __future__ import annotations

import pytest

from service.settings import Settings, SettingsError

BASE = {"COUNTER_PG_DSN": "postgresql://u@h/db", "COUNTER_REDIS_URL": "redis://h:6379/0"}


def test_the_flusher_metrics_port_defaults_to_9108() -> None:
    assert Settings.from_env(BASE).flusher_metrics_port == 9108


@pytest.mark.parametrize(("raw", "port"), [("0", 0), ("9200", 9200), (" 65535 ", 65535)])
def test_the_flusher_metrics_port_is_read(raw: str, port: int) -> None:
    env = {**BASE, "COUNTER_FLUSHER_METRICS_PORT": raw}
    assert Settings.from_env(env).flusher_metrics_port == port


@pytest.mark.parametrize("raw", ["-1", "65536", "http", "9108.5"])
def test_a_bad_flusher_metrics_port_names_its_variable(raw: str) -> None:
    with pytest.raises(SettingsError, match="COUNTER_FLUSHER_METRICS_PORT"):
        Settings.from_env({**BASE, "COUNTER_FLUSHER_METRICS_PORT": raw})


def test_flush_interval_and_batch_defaults_follow_the_design() -> None:
    s = Settings.from_env(BASE)
    assert (s.flush_interval, s.flush_batch) == (1.0, 5000)


def test_the_flusher_yields_the_cpu_by_default_and_niceness_is_bounded() -> None:
    assert Settings.from_env(BASE).flusher_nice == 10
    assert Settings.from_env({**BASE, "COUNTER_FLUSHER_NICE": "0"}).flusher_nice == 0
    for raw in ("-5", "20", "low"):
        with pytest.raises(SettingsError, match="COUNTER_FLUSHER_NICE"):
            Settings.from_env({**BASE, "COUNTER_FLUSHER_NICE": raw})
