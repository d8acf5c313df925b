"""Outages: increments keep landing in Redis, the flusher backs off and catches up afterwards."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from devstack import free_port
from service.flusher.backoff import Backoff
from service.flusher.flusher import Flusher
from service.flusher.loop import run
from service.redis_conn import connect
from service.settings import Settings
from tests.builders import NewTenant, make_store
from tests.flush_helpers import (
    increment,
    metric,
    pg_states,
    redis_states,
)


def eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.1)


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [rec.getMessage() for rec in caplog.records if rec.getMessage().startswith(text)]


def test_postgres_restarted_during_increments_postgres_catches_up_exactly(
    backend: Settings,
    pg_servers: tuple[str, Any],
    new_tenant: NewTenant,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = pg_servers[1]
    dsn = backend.pg_dsn  # the backend's database, on the session's server
    if server is None:
        pytest.skip("PostgreSQL is external (COUNTER_TEST_PG_DSN): this test cannot restart it")
    caplog.set_level(logging.INFO, logger="counter.flusher")
    tenant, _ = new_tenant()
    names = [f"p{i}" for i in range(50)]
    r = connect(backend)
    increment(r, backend.buckets, tenant, dict.fromkeys(names, 1))  # in Redis: no hydration
    store = make_store(backend)
    failures = metric("counter_flush_failures_total", backend="postgres")
    stop_flush, stop_incr, done = threading.Event(), threading.Event(), [0]

    def incrementer() -> None:
        while not stop_incr.is_set():
            store.increment(tenant, random.choice(names))  # Redis only: works while PG is down
            done[0] += 1
            time.sleep(0.002)

    flusher = Flusher(backend)
    threads = [
        threading.Thread(target=incrementer),
        threading.Thread(target=run, args=(flusher, 0.05, stop_flush, Backoff(0.05, 0.4))),
    ]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        server.stop(mode="immediate")  # a crash: in-flight transactions are lost
        time.sleep(1.5)
        assert pg_states_safe(dsn, tenant) is None  # really down
        server.start_again()
        time.sleep(1.0)
    finally:
        stop_incr.set()
        if not server.running():
            server.start_again()
        threads[0].join(30)
    expected = dict.fromkeys(names, (0, 0))
    try:

        def caught_up() -> bool:
            nonlocal expected
            expected = redis_states(r, backend.buckets, tenant, names)
            return pg_states(dsn, tenant) == expected

        eventually(caught_up, 30, "PostgreSQL equals Redis after the restart")
    finally:
        stop_flush.set()
        threads[1].join(30)
        flusher.close()
        store.close()
        r.close()
    assert sum(v for _, v in expected.values()) == len(names) + done[0]  # none lost, none twice
    assert done[0] > 100
    assert metric("counter_flush_failures_total", backend="postgres") > failures
    assert len(messages(caplog, "postgres unavailable")) == 1
    assert len(messages(caplog, "postgres available again")) == 1


def pg_states_safe(dsn: str, tenant: str) -> dict[str, tuple[int, int]] | None:
    try:
        return pg_states(dsn, tenant)
    except Exception:
        return None


def test_with_redis_down_the_flusher_waits_retries_and_then_drains(
    backend: Settings, pg_dsn: str, new_tenant: NewTenant, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="counter.flusher")
    tenant, _ = new_tenant()
    names = [f"q{i}" for i in range(30)]
    r = connect(backend)
    increment(r, backend.buckets, tenant, dict.fromkeys(names, 2))
    port = free_port()  # nothing listens there: this flusher's Redis is down
    down = (
        replace(backend, redis_nodes=(("127.0.0.1", port),))
        if backend.cluster
        else replace(backend, redis_url=f"redis://127.0.0.1:{port}/0")
    )
    target = [down]
    flusher = Flusher(backend, redis_factory=lambda: connect(target[0]))
    failures = metric("counter_flush_failures_total", backend="redis")
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(flusher, 0.05, stop, Backoff(0.05, 0.3)))
    thread.start()
    try:
        eventually(
            lambda: metric("counter_flush_failures_total", backend="redis") >= failures + 3,
            10,
            "three failed attempts",
        )
        assert pg_states(pg_dsn, tenant) == {}
        target[0] = backend  # Redis is back
        expected = dict.fromkeys(names, (0, 2))
        eventually(lambda: pg_states(pg_dsn, tenant) == expected, 15, "the backlog drained")
    finally:
        stop.set()
        thread.join(30)
        flusher.close()
        r.close()
    assert not thread.is_alive()
    assert len(messages(caplog, "redis unavailable")) == 1  # once, not once per attempt
    assert len(messages(caplog, "redis available again")) == 1


def test_stopping_the_loop_drains_with_one_final_pass(
    backend: Settings, pg_dsn: str, new_tenant: NewTenant
) -> None:
    tenant, _ = new_tenant()
    r = connect(backend)
    flusher, stop = Flusher(backend), threading.Event()
    thread = threading.Thread(target=run, args=(flusher, 3600.0, stop))
    thread.start()
    time.sleep(0.3)  # the first pass is over; the next one would be an hour away
    increment(r, backend.buckets, tenant, {"late": 4})
    stop.set()
    thread.join(30)
    flusher.close()
    r.close()
    assert pg_states(pg_dsn, tenant) == {"late": (0, 4)}
