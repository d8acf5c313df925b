"""Liveness under real faults, through gunicorn + meinheld: no request parks for good,
no worker stalls on a backend that does not answer.

Each test starts servers of its own (the faults would disturb the session's).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devstack import RedisCluster
from devstack.postgres_server import PostgresServer
from devstack.redis_servers import redis_command
from service.apikeys import create_key, new_key
from service.migrate import migrate
from service.settings import Settings, _parse_nodes
from tests.e2e.server import Gunicorn, settings_env
from tests.helpers import owner_index

KEY_HEADER = "requiems-api-key"


def post(
    url: str, path: str, key: str, timeout: float = 15, body: Any = None
) -> tuple[int | None, Any, float]:
    """One POST (of ``body`` as JSON, if given) on a new connection: (status or None,
    body or error, seconds)."""
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        data = None if body is None else json.dumps(body)
        conn.request("POST", path, body=data, headers={KEY_HEADER: key})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read()), time.monotonic() - started
    except (OSError, http.client.HTTPException) as exc:
        return None, repr(exc), time.monotonic() - started
    finally:
        conn.close()


def get_json(url: str, path: str, key: str) -> tuple[int | None, Any]:
    """One GET with the key on a new connection: (status or None, body or error)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path, headers={KEY_HEADER: key})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    except (OSError, http.client.HTTPException) as exc:
        return None, repr(exc)
    finally:
        conn.close()


def get_status(url: str, path: str) -> int | None:
    """The status of one GET on a new connection (None if it failed)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


@dataclass
class Load:
    """Closed-loop POSTs from ``threads`` keep-alive clients over ``paths``, for ``seconds``."""

    url: str
    paths: list[str]
    key: str
    statuses: list[int | None] = field(default_factory=list)
    slowest: float = 0.0

    def run(self, seconds: float, threads: int = 6) -> float:
        """Requests answered 200 per second."""
        self.statuses, self.slowest = [], 0.0
        stop = time.monotonic() + seconds
        lock = threading.Lock()

        def client(i: int) -> None:
            host, port = self.url.removeprefix("http://").split(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=15)
            n = i
            while time.monotonic() < stop:
                path = self.paths[n % len(self.paths)]
                n += threads
                started = time.monotonic()
                try:
                    conn.request("POST", path, headers={KEY_HEADER: self.key})
                    resp = conn.getresponse()
                    resp.read()
                    status: int | None = resp.status
                except (OSError, http.client.HTTPException):
                    status = None
                    conn.close()
                    conn = http.client.HTTPConnection(host, int(port), timeout=15)
                with lock:
                    self.statuses.append(status)
                    self.slowest = max(self.slowest, time.monotonic() - started)
            conn.close()

        workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(seconds + 30)
        return self.statuses.count(200) / seconds


def paths_by_owner(
    cluster: RedisCluster, settings: Settings, tenant: str, owner: int, n: int, on: bool
) -> list[str]:
    """``n`` counter paths whose master is (``on``) or is not cluster node ``owner``."""
    found = []
    for i in range(2000):
        ns = f"c{i}"
        if (owner_index(cluster, settings, tenant, ns) == owner) == on:
            found.append(f"/v1/misc/counter/{ns}")
            if len(found) == n:
                return found
    raise AssertionError("not enough namespaces")


@contextmanager
def black_holed(pid: int, port: int) -> Iterator[None]:
    """Stop a server and fill its accept backlog: its packets go unanswered, no RST."""
    os.kill(pid, signal.SIGSTOP)
    fillers: list[socket.socket] = []
    try:
        for _ in range(5000):  # until a connect times out: new SYNs are dropped
            s = socket.socket()
            s.settimeout(0.3)
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                s.close()
                break
            fillers.append(s)
        else:
            raise AssertionError("the backlog never filled")
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
        for s in fillers:
            s.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    c = RedisCluster(tmp_path / "cluster", masters=3)
    c.start()
    # One lost master must not take the others' slots down with it (as deployed).
    for _, port in c.nodes:
        redis_command(port, "CONFIG", "SET", "cluster-require-full-coverage", "no")
    try:
        yield c
    finally:
        c.stop()


def start_service(tmp_path: Path, settings: Settings, **env: str) -> Gunicorn:
    server = Gunicorn(settings_env(settings, **env), tmp_path / "gunicorn.log")
    server.wait_ready()
    return server


def test_after_a_redis_blip_with_thousands_of_idle_clients_every_request_is_answered(
    tmp_path: Path, cluster: RedisCluster, pg_dsn: str, new_tenant: Any
) -> None:
    """The reported hang: new Redis sockets got fds the loop could not wait on."""
    settings = Settings(pg_dsn=pg_dsn, redis_nodes=_parse_nodes(cluster.nodes_str))
    server = start_service(
        tmp_path,
        settings,
        COUNTER_WORKERS="1",
        COUNTER_WORKER_CONNECTIONS="3000",
        COUNTER_REDIS_TIMEOUT="1",
    )
    idle: list[socket.socket] = []
    try:
        tenant, key = new_tenant()
        paths = [f"/v1/misc/counter/n{i}" for i in range(60)]
        assert all(post(server.url, p, key)[0] == 200 for p in paths)
        for _ in range(2400):  # keep-alive clients that sent one request and went quiet
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            idle.append(s)
        for _, port in cluster.nodes:  # the blip: every client connection to Redis cut
            redis_command(port, "CLIENT", "KILL", "TYPE", "normal")

        def burst() -> list[tuple[int | None, Any, float]]:
            out: list[tuple[int | None, Any, float]] = []
            threads = [
                threading.Thread(target=lambda p=p: out.append(post(server.url, p, key)))
                for p in paths
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            return out

        first = burst()
        print("after the blip:", {s: [r[0] for r in first].count(s) for s in (200, 503)})
        assert len(first) == 60 and all(r[0] in (200, 503) for r in first), first
        deadline = time.monotonic() + 10
        while True:  # then everything counts again within a few seconds
            again = burst()
            if all(r[0] == 200 for r in again):
                break
            assert time.monotonic() < deadline, [r for r in again if r[0] != 200][:3]
            time.sleep(0.5)
    finally:
        for s in idle:
            s.close()
        server.stop()


def test_clients_past_worker_connections_get_the_json_503_and_the_rest_are_served(
    tmp_path: Path, cluster: RedisCluster, pg_dsn: str, new_tenant: Any
) -> None:
    settings = Settings(pg_dsn=pg_dsn, redis_nodes=_parse_nodes(cluster.nodes_str))
    server = start_service(
        tmp_path, settings, COUNTER_WORKERS="1", COUNTER_WORKER_CONNECTIONS="200"
    )
    held: list[socket.socket] = []
    try:
        _, key = new_tenant()
        refused = 0
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            reply = s.recv(4096)
            if reply.startswith(b"HTTP/1.1 503"):
                head, _, body = reply.partition(b"\r\n\r\n")
                assert b"Connection: close" in head and b"Retry-After: 1" in head
                error = json.loads(body)
                assert error["error"] == "unavailable" and "timestamp" in error["metadata"]
                refused += 1
                s.close()
            else:
                assert reply.startswith(b"HTTP/1.1 200"), reply
                held.append(s)
        assert 50 <= refused <= 120, refused  # about the 100 past the limit
        for _, port in cluster.nodes:  # Redis sockets still find room in the loop
            redis_command(port, "CLIENT", "KILL", "TYPE", "normal")
        for s in held[:5]:  # those held are still served, with new Redis connections
            s.sendall(
                b"POST /v1/misc/counter/kept HTTP/1.1\r\nHost: t\r\n"
                + f"{KEY_HEADER}: {key}\r\nContent-Length: 0\r\n\r\n".encode()
            )
            reply = s.recv(4096)
            assert reply.startswith((b"HTTP/1.1 200", b"HTTP/1.1 503")), reply
        held[5].sendall(
            b"POST /v1/misc/counter/kept HTTP/1.1\r\nHost: t\r\n"
            + f"{KEY_HEADER}: {key}\r\nContent-Length: 0\r\n\r\n".encode()
        )
        assert held[5].recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        for s in held:
            s.close()
        server.stop()


def test_a_black_holed_redis_node_costs_only_its_own_requests(
    tmp_path: Path, cluster: RedisCluster, pg_dsn: str, new_tenant: Any
) -> None:
    settings = Settings(pg_dsn=pg_dsn, redis_nodes=_parse_nodes(cluster.nodes_str))
    server = start_service(tmp_path, settings, COUNTER_REDIS_TIMEOUT="1")
    try:
        tenant, key = new_tenant()
        lost = paths_by_owner(cluster, settings, tenant, 0, 4, on=True)
        others = paths_by_owner(cluster, settings, tenant, 0, 24, on=False)
        assert all(post(server.url, p, key)[0] == 200 for p in lost + others)
        load = Load(server.url, others, key)
        before = load.run(3)
        trickle: list[tuple[int | None, Any, float]] = []
        stop = threading.Event()

        def lost_node_client() -> None:
            i = 0
            while not stop.is_set():  # 5 requests a second for the lost node's counters
                path = lost[i % len(lost)]
                threading.Thread(
                    target=lambda p=path: trickle.append(post(server.url, p, key))
                ).start()
                i += 1
                stop.wait(0.2)

        with black_holed(cluster.pids[0], cluster.nodes[0][1]):
            t = threading.Thread(target=lost_node_client)
            t.start()
            during = load.run(4)
            during_statuses = list(load.statuses)
            # Liveness: a black-holed node is the watchdog's to fail, not a wedged worker.
            health = [get_status(server.url, "/healthz") for _ in range(20)]
            stop.set()
            t.join(10)
            time.sleep(6)  # the last trickle requests end within their deadline
        print(f"black-holed node: {during:.0f} req/s during vs {before:.0f} before")
        assert set(during_statuses) == {200}, set(during_statuses)
        assert health == [200] * 20
        assert during >= 0.5 * before, f"{during:.0f}/s during vs {before:.0f}/s before"
        assert len(trickle) >= 15
        assert {r[0] for r in trickle} <= {503}, {r[0] for r in trickle}
        assert all(r[1]["error"] == "unavailable" for r in trickle)
        assert max(r[2] for r in trickle) < 5.0  # each within the timeout's bound
        deadline = time.monotonic() + 15
        while not all(post(server.url, p, key)[0] == 200 for p in lost):  # recovery
            assert time.monotonic() < deadline, "the node's counters did not recover"
            time.sleep(0.5)
    finally:
        server.stop()


def test_a_batch_across_a_black_holed_node_counts_on_the_others_and_fails_its_own(
    tmp_path: Path, cluster: RedisCluster, pg_dsn: str, new_tenant: Any
) -> None:
    """A batch's calls to every master are in flight together: one master that does
    not answer costs its own items (503 each, within the timeout's bound) and nothing
    else; the others' items are counted exactly once, and the worker goes on."""
    settings = Settings(pg_dsn=pg_dsn, redis_nodes=_parse_nodes(cluster.nodes_str))
    server = start_service(tmp_path, settings, COUNTER_REDIS_TIMEOUT="1")
    try:
        tenant, key = new_tenant()
        lost = [
            p.rsplit("/", 1)[1] for p in paths_by_owner(cluster, settings, tenant, 0, 3, on=True)
        ]
        others = [
            p.rsplit("/", 1)[1] for p in paths_by_owner(cluster, settings, tenant, 0, 9, on=False)
        ]
        items = [{"namespace": ns, "by": 1} for ns in lost + others]
        status, body, _ = post(server.url, "/v1/misc/counters", key, body={"increments": items})
        assert status == 200 and all("value" in r for r in body["data"]["results"]), body
        answers: list[tuple[int | None, Any, float]] = []
        with black_holed(cluster.pids[0], cluster.nodes[0][1]):
            threads = [
                threading.Thread(
                    target=lambda: answers.append(
                        post(server.url, "/v1/misc/counters", key, body={"increments": items})
                    )
                )
                for _ in range(8)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            health = [get_status(server.url, "/healthz") for _ in range(5)]
        assert len(answers) == 8 and {a[0] for a in answers} == {200}, answers
        assert max(a[2] for a in answers) < 5.0  # each within the timeout's bound
        for _, answer, _ in answers:
            results = answer["data"]["results"]
            assert [r["namespace"] for r in results] == lost + others
            assert all(r["error"]["error"] == "unavailable" for r in results[: len(lost)])
            assert all("value" in r for r in results[len(lost) :]), results
        assert health == [200] * 5
        deadline = time.monotonic() + 15
        mine = {"increments": [{"namespace": ns} for ns in lost]}
        while True:  # recovery (the lost node's counters only)
            status, body, _ = post(server.url, "/v1/misc/counters", key, body=mine)
            if status == 200 and all("value" in r for r in body["data"]["results"]):
                break
            assert time.monotonic() < deadline, "the node's counters did not recover"
            time.sleep(0.5)
        query = "&".join(f"namespace={ns}" for ns in others)
        status, body = get_json(server.url, f"/v1/misc/counters?{query}", key)
        assert status == 200, body
        values = [r["value"] for r in body["data"]["results"]]
        assert values == [1 + 8] * len(others), values  # the first batch and the eight
    finally:
        server.stop()


def process_tree(pid: int) -> list[int]:
    """``pid`` and its children (a postmaster's backends)."""
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry))
    return [pid, *kids]


def test_a_black_holed_postgres_costs_only_the_requests_that_need_it(
    tmp_path: Path, cluster: RedisCluster, new_tenant: Any
) -> None:
    pg = PostgresServer()
    dsn = pg.start()
    server = None
    try:
        settings = Settings(pg_dsn=dsn, redis_nodes=_parse_nodes(cluster.nodes_str))
        migrate(settings)
        key = create_key(dsn, "liveness")[1]
        server = start_service(
            tmp_path,
            settings,
            COUNTER_PG_CONNECT_TIMEOUT="1",
            COUNTER_PG_STATEMENT_TIMEOUT="1",
        )
        known = [f"/v1/misc/counter/k{i}" for i in range(12)]
        assert all(post(server.url, p, key)[0] == 200 for p in known)
        pids = process_tree(pg.pid or 0)
        assert len(pids) > 1
        for p in pids:
            os.kill(p, signal.SIGSTOP)
        try:
            load = Load(server.url, known, key)
            needs_pg: list[tuple[int | None, Any, float]] = []
            fresh = threading.Thread(
                target=lambda: needs_pg.extend(
                    [
                        post(server.url, "/v1/misc/counter/fresh", key),
                        post(server.url, "/v1/misc/counter/k0", new_key()),
                    ]
                )
            )
            fresh.start()
            load.run(5)
            fresh.join(20)
        finally:
            for p in pids:
                os.kill(p, signal.SIGCONT)
        # Counters in Redis went on, none waiting behind the requests stuck on PostgreSQL.
        assert load.statuses and set(load.statuses) == {200}, set(load.statuses)
        assert load.slowest < 1.5, f"a Redis-only request took {load.slowest:.2f} s"
        # A new counter needs PostgreSQL: a prompt 503. An unknown key does not (keys are
        # in memory): a prompt 401.
        assert [r[0] for r in needs_pg] == [503, 401], needs_pg
        assert all(r[2] < 5.0 for r in needs_pg), needs_pg
        deadline = time.monotonic() + 15
        while post(server.url, "/v1/misc/counter/fresh", key)[0] != 200:  # recovery
            assert time.monotonic() < deadline, "PostgreSQL reads did not recover"
            time.sleep(0.5)
    finally:
        if server is not None:
            server.stop()
        pg.cleanup()  # stops it and removes its data dir (pg.stop() left 47 MB per run)
