"""A Redis master killed under concurrent load through one meinheld worker.

Every request in flight on the node's pipelined connection must end, with a 503
(outcome unknown) while the node is gone and a 200 again once it is back; no
request hangs and the worker does not crash. A cluster of its own: the restart
empties the node.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from devstack import RedisCluster
from service.settings import Settings, _parse_nodes
from tests.builders import NewTenant
from tests.e2e.server import Gunicorn, settings_env
from tests.helpers import owner_index

THREADS = 8


def hammer(url: str, path: str, key: str, stop: threading.Event, out: list[Any]) -> None:
    """POST until ``stop``; record (start time, status, body) per request, or the exception."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=15)
    while not stop.is_set():
        started = time.monotonic()
        try:
            conn.request("POST", path, headers={"requiems-api-key": key})
            resp = conn.getresponse()
            out.append((started, resp.status, json.loads(resp.read())))
        except (OSError, http.client.HTTPException) as exc:
            out.append((started, None, repr(exc)))
            return
    conn.close()


def test_a_killed_master_fails_the_requests_in_flight_and_the_worker_recovers(
    tmp_path: Path, pg_dsn: str, new_tenant: NewTenant
) -> None:
    cluster = RedisCluster(tmp_path / "cluster", masters=3)
    server = None
    try:
        settings = Settings(pg_dsn=pg_dsn, redis_nodes=_parse_nodes(cluster.start()))
        env = settings_env(settings, COUNTER_WORKERS="1", COUNTER_REDIS_TIMEOUT="1")
        server = Gunicorn(env, tmp_path / "gunicorn.log")
        server.wait_ready()
        tenant, key = new_tenant()
        on_node_0 = (f"n{i}" for i in range(200))
        ns = next(n for n in on_node_0 if owner_index(cluster, settings, tenant, n) == 0)
        path = f"/v1/misc/counter/{ns}"

        stop = threading.Event()
        results: list[list[Any]] = [[] for _ in range(THREADS)]
        threads = [
            threading.Thread(target=hammer, args=(server.url, path, key, stop, out))
            for out in results
        ]
        for t in threads:
            t.start()
        time.sleep(0.5)
        cluster.kill_node(0)
        time.sleep(0.5)
        cluster.restart_node(0)  # back on its port, empty; returns once the cluster is ok
        back = time.monotonic()
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads), "a request hung"

        flat = [r for out in results for r in out]
        assert all(r[1] in (200, 503) for r in flat), [r for r in flat if r[1] not in (200, 503)]
        assert all(r[2]["error"] == "unavailable" for r in flat if r[1] == 503)
        assert any(r[1] == 503 for r in flat), "the kill was not felt: nothing tested"
        assert all(out and out[-1][1] == 200 for out in results), "not recovered"
        # Once back, the node hydrates the counter from PostgreSQL and every
        # acknowledged increment gets a value of its own.
        after = [r[2]["data"]["value"] for r in flat if r[1] == 200 and r[0] > back]
        assert after and len(after) == len(set(after))
        assert server.log.read_text().count("Booting worker") == 1, "the worker crashed"
    finally:
        if server is not None:
            server.stop()
        cluster.stop()
