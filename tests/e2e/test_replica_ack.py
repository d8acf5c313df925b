"""COUNTER_REPLICA_ACK=1: a 200 only once a replica has the increment (WAIT 1 per
pipelined batch), through gunicorn + meinheld, against a real master and replica.

While the replica is stopped, increments still run on the master but answer 503
(applied, not confirmed: the outcome the client must treat as unknown); once it is
back, 200 again. The master's final value counts every 200 and every such 503 once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from devstack import RedisSingle, free_port
from service.settings import Settings
from tests.builders import NewTenant
from tests.e2e.http_client import request
from tests.e2e.server import Gunicorn, settings_env


@pytest.fixture
def master_and_replica(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    master = RedisSingle(tmp_path / "master")
    url = master.start()
    port = free_port()
    replica = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path),
         "--replicaof", "127.0.0.1", str(master.port)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        r = redis.Redis(port=port)
        deadline = time.monotonic() + 20
        while True:
            try:
                if r.info("replication").get("master_link_status") == "up":
                    break
            except redis.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the replica never synced"
            time.sleep(0.1)
        yield url, replica
    finally:
        os.kill(replica.pid, signal.SIGCONT)
        replica.terminate()
        replica.wait(10)
        master.stop()


def test_a_200_waits_for_a_replica_and_none_is_given_while_it_is_away(
    tmp_path: Path,
    master_and_replica: tuple[str, subprocess.Popen[bytes]],
    pg_dsns: dict[str, str],
    new_tenant: NewTenant,
) -> None:
    url, replica = master_and_replica
    settings = Settings(pg_dsn=pg_dsns["single"], redis_url=url)
    env = settings_env(settings, COUNTER_REPLICA_ACK="1", COUNTER_REPLICA_ACK_TIMEOUT="0.5")
    server = Gunicorn(env, tmp_path / "gunicorn.log")
    try:
        server.wait_ready()
        _, key = new_tenant()
        path = "/v1/misc/counter/acked"
        replies = [request(server.url, "POST", path, key)[:2] for _ in range(20)]
        assert [r[0] for r in replies] == [200] * 20
        assert [r[1]["data"]["value"] for r in replies] == list(range(1, 21))
        os.kill(replica.pid, signal.SIGSTOP)
        time.sleep(0.3)  # stopped: it acknowledges nothing more
        away = []
        for _ in range(3):
            started = time.monotonic()
            status, body = request(server.url, "POST", path, key)[:2]
            away.append((status, body.get("error"), time.monotonic() - started))
        assert [a[:2] for a in away] == [(503, "unavailable")] * 3
        assert all(a[2] < 4 for a in away)  # the WAIT's timeout, plus a timer tick or two
        assert request(server.url, "GET", path, key)[0] == 200  # reads wait for no replica
        os.kill(replica.pid, signal.SIGCONT)
        deadline, attempts = time.monotonic() + 10, 1
        while request(server.url, "POST", path, key)[0] != 200:
            assert time.monotonic() < deadline, "no 200 after the replica came back"
            attempts += 1
            time.sleep(0.2)
        final = request(server.url, "GET", path, key)[1]["data"]["value"]
        assert final == 20 + 3 + attempts, (away, attempts)  # each attempt ran once, none twice
    finally:
        server.stop()
