"""Retry pacing and once-per-change outage logging of the flusher loop."""

from __future__ import annotations

import logging

import psycopg
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException

from service.flusher.backoff import BackendStatus, Backoff
from service.flusher.flusher import backend_of


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    b = Backoff(base=0.5, cap=4.0, jitter=0.0)
    assert [b.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.next_delay() == 0.5


def test_backoff_jitter_stays_within_its_bounds() -> None:
    b = Backoff(base=1.0, cap=1.0, jitter=0.1)
    delays = [b.next_delay() for _ in range(200)]
    assert all(0.9 <= d <= 1.1 for d in delays)
    assert len(set(delays)) > 1


def test_the_flushers_default_pacing_is_half_a_second_up_to_30_seconds() -> None:
    """README: a backend that is down is retried with backoff from 0.5 s to 30 s, jittered."""
    b = Backoff()
    delays = [b.next_delay() for _ in range(100)]
    assert 0.45 <= delays[0] <= 0.55 and 0.9 <= delays[1] <= 1.1
    assert all(d <= 33.0 for d in delays)  # 30 s, +10% jitter at most
    assert all(27.0 <= d for d in delays[7:])  # 0.5 * 2**6 = 32 > 30: capped from the 7th


def test_backoff_needs_a_positive_base_below_the_cap() -> None:
    with pytest.raises(ValueError):
        Backoff(base=0, cap=1)
    with pytest.raises(ValueError):
        Backoff(base=2, cap=1)


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    status = BackendStatus()
    caplog.set_level(logging.INFO, logger="counter.flusher")
    assert status.failed("postgres", OSError("refused")) is True
    assert status.failed("postgres", OSError("refused")) is False
    assert status.failed("postgres", OSError("refused")) is False
    status.worked("redis", "postgres")
    status.worked("redis", "postgres")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "postgres unavailable, flushing paused; retrying with backoff",
        "postgres available again, flushing resumed",
    ]


def test_errors_are_attributed_to_their_backend() -> None:
    assert backend_of(psycopg.OperationalError("down")) == "postgres"
    assert backend_of(RedisConnectionError("down")) == "redis"
    assert backend_of(RedisClusterException("no nodes")) == "redis"
    assert backend_of(KeyError("bug")) == "flusher"
