"""PostgreSQL unreachable: queries fail at once, known API keys keep working for a grace period."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from service.api import pg
from service.api.auth import Authenticator
from service.api.errors import Unauthorized
from service.api.pg import Database
from service.apikeys import create_key, revoke_key
from service.errors import BackendUnavailable
from tests.builders import NewTenant

DEAD_DSN = "postgresql://postgres@127.0.0.1:1/counter"  # nothing listens: refused


def timed_failure(db: Database) -> float:
    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        db.read_counter(0, "t", "ns")
    return time.monotonic() - started


def test_after_a_failure_queries_fail_at_once_then_probe_briefly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="counter.pg")
    db = Database(DEAD_DSN, max_size=2, timeout=1.0)
    try:
        assert 0.5 < timed_failure(db) < 3  # the first one waits for the pool: an outage
        assert timed_failure(db) < 0.05  # then no waiting at all ...
        time.sleep(pg.RETRY_AFTER)
        assert timed_failure(db) < 0.5  # ... and, after RETRY_AFTER, a short probe
        assert timed_failure(db) < 0.05
    finally:
        db.close()
    ours = [r.getMessage() for r in caplog.records if r.name == "counter.pg"]
    assert ours == ["postgres unavailable"]  # once, not once per query


def test_a_known_key_works_through_an_outage_for_the_grace_period(
    pg_dsn: str, new_tenant: NewTenant
) -> None:
    tenant, key = new_tenant()
    live, dead = Database(pg_dsn, max_size=2), Database(DEAD_DSN, max_size=2, timeout=0.5)
    auth = Authenticator(live, ttl=0, grace=1.5)  # ttl 0: every call asks PostgreSQL
    try:
        assert auth.tenant_for(key) == tenant
        with pytest.raises(Unauthorized):
            auth.tenant_for("ck_unknown")
        auth.db = dead  # PostgreSQL becomes unreachable
        started = time.monotonic()
        assert auth.tenant_for(key) == tenant  # the last answer stands
        assert auth.tenant_for(key) == tenant
        with pytest.raises(Unauthorized):
            auth.tenant_for("ck_unknown")  # so does a known "no such key"
        with pytest.raises(BackendUnavailable):
            auth.tenant_for("ck_never_seen")  # nothing to go on: 503
        time.sleep(max(0.0, 1.6 - (time.monotonic() - started)))
        with pytest.raises(BackendUnavailable):
            auth.tenant_for(key)  # past the grace period

        auth.db = live  # back: answers are fresh again, revocation included
        assert auth.tenant_for(key) == tenant
        record, other_key = create_key(pg_dsn, tenant)
        assert auth.tenant_for(other_key) == tenant
        assert revoke_key(pg_dsn, record.id)
        with pytest.raises(Unauthorized):
            auth.tenant_for(other_key)
    finally:
        live.close()
        dead.close()


def test_a_postgres_restart_costs_no_query(pg_servers: tuple[str, Any]) -> None:
    """The pool's connections die with the restart; the next query finds a new one."""
    dsn, server = pg_servers
    if server is None:
        pytest.skip("PostgreSQL is external (COUNTER_TEST_PG_DSN): this test cannot restart it")
    db = Database(dsn, max_size=2)
    try:
        assert db.read_counter(0, "t", "never") == (0, 0)  # a pooled connection now exists
        server.stop(mode="immediate")
        server.start_again()
        assert db.read_counter(0, "t", "never") == (0, 0)  # not a 503
    finally:
        if not server.running():
            server.start_again()
        db.close()
