"""Authentication from memory under gunicorn + meinheld (2 workers) on a Redis Cluster:
revocation reaches every worker within about a second; a flood of made-up keys costs
PostgreSQL no query; counterctl manages scopes and limits."""

from __future__ import annotations

import http.client
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import psycopg
import pytest

from devstack import PostgresServer
from service.apikeys import create_key, new_key
from service.migrate import migrate
from service.settings import Settings
from tests.e2e.server import BIN, Gunicorn, settings_env

PATH = "/v1/misc/counter/auth-e2e"


def connect(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)


def status(conn: http.client.HTTPConnection, key: str, method: str = "GET") -> int:
    conn.request(method, PATH, headers={"requiems-api-key": key})
    resp = conn.getresponse()
    resp.read()
    return resp.status


def owner(server: Gunicorn, conn: http.client.HTTPConnection) -> int:
    """The pid of the worker that accepted ``conn``."""
    local_port = conn.sock.getsockname()[1]
    for worker in psutil.Process(server.proc.pid).children():
        for c in worker.net_connections(kind="tcp"):
            if c.laddr.port == server.port and c.raddr and c.raddr.port == local_port:
                return worker.pid
    raise AssertionError("no worker holds the connection")


def ctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "counterctl"), *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_revocation_reaches_every_worker_within_about_a_second(
    cluster_settings: Settings, tmp_path: Path
) -> None:
    tenant = f"rv{int(time.time() * 1000)}"
    record, key = create_key(cluster_settings.pg_dsn, tenant)  # before start: in the first load
    env = settings_env(cluster_settings, COUNTER_WORKERS="2")
    server = Gunicorn(env, tmp_path / "gunicorn.log")
    conns: list[http.client.HTTPConnection] = []
    try:
        server.wait_ready()
        by_worker: dict[int, list[http.client.HTTPConnection]] = {}
        while len(by_worker) < 2:  # keep-alive connections on each worker
            assert len(conns) < 64, "the kernel gave every connection to one worker"
            conns.append(connect(server.url))
            assert status(conns[-1], key) == 200
            by_worker.setdefault(owner(server, conns[-1]), []).append(conns[-1])

        started = time.monotonic()
        assert ctl(env, "keys", "revoke", str(record.id)).returncode == 0
        committed = time.monotonic()  # counterctl has exited: the revocation is committed
        refused: dict[int, float] = {}
        while len(refused) < len(by_worker):
            assert time.monotonic() - committed < 10, f"still accepted by a worker: {refused}"
            for pid, held in by_worker.items():
                if pid not in refused and status(held[0], key) == 401:
                    refused[pid] = time.monotonic() - committed
            time.sleep(0.005)
        slowest = max(refused.values())
        print(
            f"revocation: every worker refuses the key {slowest * 1000:.0f} ms after "
            f"`counterctl keys revoke` returned ({(committed - started) * 1000:.0f} ms to run "
            f"it); per worker: {sorted(round(v * 1000) for v in refused.values())} ms"
        )
        assert slowest < 3.0  # "about a second" (the periodic resync alone would take 60 s)
        for held in by_worker.values():
            assert status(held[-1], key, "POST") == 401
    finally:
        for conn in conns:
            conn.close()
        server.stop()


@pytest.fixture(scope="module")
def counted_pg() -> Iterator[str]:
    """A PostgreSQL of this module's own with pg_stat_statements: every statement counted."""
    pg = PostgresServer()
    try:
        dsn = pg.start()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        pg.restart(mode="fast")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        yield dsn
    finally:
        pg.cleanup()


def statements(dsn: str) -> int:
    """Statements PostgreSQL has run so far, other than these counts themselves."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
            " WHERE query NOT LIKE '%pg_stat_statements%'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_flood_of_made_up_keys_costs_postgres_no_query(
    cluster_settings: Settings, counted_pg: str, tmp_path: Path
) -> None:
    settings = replace(cluster_settings, pg_dsn=counted_pg)
    migrate(settings)
    _, key = create_key(counted_pg, "flood")
    # The tarpit off: 2,000 failures answered at once (it is tested below).
    env = settings_env(settings, COUNTER_WORKERS="2", COUNTER_AUTH_FAILURES_PER_S="0")
    server = Gunicorn(env, tmp_path / "gunicorn.log")
    try:
        server.wait_ready()
        valid = connect(server.url)
        assert status(valid, key, "POST") == 200  # the counter is hydrated: no read later
        time.sleep(0.5)
        before = statements(counted_pg)
        answers: dict[int, int] = {}
        lock = threading.Lock()

        def flood(n: int) -> None:
            conn, seen = connect(server.url), dict[int, int]()
            for i in range(n):
                made_up = new_key() if i % 10 else "ck_bogus_" + new_key()  # malformed too
                code = status(conn, made_up, "POST")
                seen[code] = seen.get(code, 0) + 1
            conn.close()
            with lock:
                for code, count in seen.items():
                    answers[code] = answers.get(code, 0) + count

        threads = [threading.Thread(target=flood, args=(500,)) for _ in range(4)]
        for t in threads:
            t.start()
        served = [status(valid, key, "POST") for _ in range(50)]  # valid keys meanwhile
        for t in threads:
            t.join(120)
        during = statements(counted_pg) - before
        print(f"flood: {answers} answers, {during} PostgreSQL statements")
        assert answers == {401: 2000}
        assert set(served) == {200}
        assert during == 0
        # The count sees the service's queries: a new counter is read from PostgreSQL.
        assert status(valid, key, "POST") == 200
        conn = connect(server.url)
        conn.request("POST", PATH + "-new", headers={"requiems-api-key": key})
        assert conn.getresponse().status == 200
        conn.close()
        assert statements(counted_pg) - before >= 1
        valid.close()
    finally:
        server.stop()


def test_a_flood_past_the_failure_budget_is_held_while_valid_keys_are_answered(
    cluster_settings: Settings, tmp_path: Path
) -> None:
    """16 connections send made-up keys as fast as they are answered for 4 s, against one
    worker allowing 5 failures a second: the tarpit holds the rest about 2 s each, so
    at most ~100 are answered (thousands without it), every one a JSON 401, while a
    valid key on the same worker is answered at its usual speed."""
    _, key = create_key(cluster_settings.pg_dsn, "tarpit")
    env = settings_env(
        cluster_settings,
        COUNTER_WORKERS="1",
        COUNTER_AUTH_FAILURES_PER_S="5",
        COUNTER_AUTH_FAILURE_DELAY="2",
    )
    server = Gunicorn(env, tmp_path / "gunicorn.log")
    window, conns = 4.0, 16
    try:
        server.wait_ready()
        valid = connect(server.url)
        assert status(valid, key, "POST") == 200
        answers: list[tuple[int, bytes, float]] = []
        lock = threading.Lock()
        stop_at = time.monotonic() + window

        def flood() -> None:
            conn = connect(server.url)
            while time.monotonic() < stop_at:
                sent = time.monotonic()
                conn.request("POST", PATH, headers={"requiems-api-key": new_key()})
                resp = conn.getresponse()
                answer = (resp.status, resp.read(), time.monotonic() - sent)
                with lock:
                    answers.append(answer)
            conn.close()

        threads = [threading.Thread(target=flood) for _ in range(conns)]
        for t in threads:
            t.start()
        served: list[float] = []
        while time.monotonic() < stop_at:  # a valid key, on the same (only) worker
            sent = time.monotonic()
            assert status(valid, key, "POST") == 200
            served.append(time.monotonic() - sent)
        for t in threads:
            t.join(30)
        held = [a for a in answers if a[2] >= 0.5]
        print(
            f"tarpit: {len(answers)} 401s in {window:.0f} s from {conns} connections, "
            f"{len(held)} held; valid key: {len(served)} answered, "
            f"median {sorted(served)[len(served) // 2] * 1000:.1f} ms"
        )
        assert {a[0] for a in answers} == {401}
        assert all(b'"error":"unauthorized"' in a[1] for a in answers)
        # The budget's 5 + 5/s, plus one answer per connection per hold (≥ 1 s: the
        # timer ticks once a second) and the one each had in flight at the end.
        assert len(answers) <= 5 + 5 * window + conns * (window + 1)
        assert len(held) >= conns  # every flooding connection was held at least once
        assert len(served) >= 20
        assert sorted(served)[len(served) // 2] < 0.25  # valid keys are never held
        after = time.monotonic() + 5  # held requests drain: nothing is kept for good
        while (held_now := _held_metric(server.url)) < len(held) and time.monotonic() < after:
            time.sleep(0.2)
        assert held_now >= len(held)
        valid.close()
    finally:
        server.stop()


def _held_metric(url: str) -> float:
    conn = connect(url)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    for line in text.splitlines():
        if line.startswith("counter_auth_failures_held_total "):
            return float(line.split()[1])
    return 0.0


def test_counterctl_sets_scopes_and_limits(cluster_settings: Settings) -> None:
    env = settings_env(cluster_settings)
    tenant = f"cl{int(time.time() * 1000)}"
    created = ctl(
        env,
        "keys",
        "create",
        "--tenant",
        tenant,
        "--scope",
        "read",
        "--rate",
        "20",
        "--burst",
        "40",
    )
    assert created.returncode == 0, created.stderr
    assert "scope=read limit=20/s burst 40" in created.stdout
    assert created.stdout.strip().splitlines()[-1].startswith("ck_")
    row = ctl(env, "keys", "list", "--tenant", tenant).stdout.strip().splitlines()[-1]
    key_id = row.split()[0]
    assert "read" in row and "20/s burst 40" in row
    assert ctl(env, "keys", "update", key_id, "--rate", "5").returncode == 0
    assert "5/s burst 5" in ctl(env, "keys", "list", "--tenant", tenant).stdout  # one second's
    assert ctl(env, "keys", "update", key_id).returncode == 0  # no flags: unlimited
    assert "unlimited" in ctl(env, "keys", "list", "--tenant", tenant).stdout
    assert ctl(env, "keys", "update", key_id, "--burst", "3").returncode == 2
    assert ctl(env, "keys", "create", "--tenant", tenant, "--rate", "0").returncode == 2
    assert ctl(env, "keys", "create", "--tenant", tenant, "--scope", "root").returncode == 2
    assert ctl(env, "keys", "update", "999999999", "--rate", "1").returncode == 1
