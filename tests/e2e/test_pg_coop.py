"""Under meinheld, requests waiting on PostgreSQL do not hold up the worker's other requests.

PostgreSQL is made slow by holding a lock on the counters table: every read that
hydrates a new counter waits for it. One worker with a pool of two connections:
more requests need PostgreSQL than it has connections.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg

from service.settings import Settings
from tests.builders import NewTenant
from tests.e2e.http_client import post_in_background, request
from tests.e2e.server import Gunicorn, settings_env

HOLD = 1.5  # seconds the table stays locked


def test_other_requests_are_served_while_reads_wait_on_postgres(
    cluster_settings: Settings, pg_dsn: str, new_tenant: NewTenant, tmp_path: Path
) -> None:
    env = settings_env(cluster_settings, COUNTER_WORKERS="1", COUNTER_PG_POOL_MAX="2")
    server = Gunicorn(env, tmp_path / "gunicorn.log")
    _, key = new_tenant()
    try:
        server.wait_ready()
        url, known = server.url, "/v1/misc/counter/known"
        assert request(url, "POST", known, key)[1]["data"]["value"] == 1  # key cached, in Redis

        with psycopg.connect(pg_dsn) as lock:
            lock.execute("LOCK TABLE counters IN ACCESS EXCLUSIVE MODE")
            locked_at = time.monotonic()
            # Four new counters: two reads wait in PostgreSQL, two for a connection.
            waiting = [post_in_background(url, f"/v1/misc/counter/new-{i}", key) for i in range(4)]
            for n in range(2, 6):
                started = time.monotonic()
                status, body, _ = request(url, "POST", known, key)
                took = time.monotonic() - started
                assert status == 200 and body["data"]["value"] == n
                # Generous: a request queued behind the lock would wait the whole HOLD.
                assert took < HOLD / 3, f"a Redis-only increment waited {took:.2f} s behind PG"
            assert time.monotonic() - locked_at < HOLD  # all of that while the lock was held
            time.sleep(max(0.0, HOLD - (time.monotonic() - locked_at)))
            lock.rollback()  # PostgreSQL answers again

        for thread, result in waiting:
            thread.join(10)
            assert result and result[0][0] == 200 and result[0][1]["data"]["value"] == 1
    finally:
        server.stop()
