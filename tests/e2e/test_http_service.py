"""End to end through gunicorn + meinheld: raw HTTP, real Redis and PostgreSQL."""

from __future__ import annotations

import http.client
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from devstack import free_port
from service.keys import INVALID_NAMESPACE
from service.settings import Settings
from tests.builders import NewTenant
from tests.e2e.http_client import hammer, request
from tests.e2e.server import BIN, Gunicorn, listening_workers, settings_env


def test_post_then_get_over_http(service_url: str, new_tenant: NewTenant) -> None:
    _, key = new_tenant()
    assert request(service_url, "POST", "/v1/misc/counter/page-views", key)[1]["data"] == {
        "namespace": "page-views",
        "value": 1,
    }
    status, body, headers = request(service_url, "GET", "/v1/technology/counter/page-views", key)
    assert status == 200 and body["data"]["value"] == 1
    assert headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(
    "path", ["a%2Fb", "a%2fb", "a%00b", "a%20b", "%2E%2E", "a.b", "caf%C3%A9", "n" * 65]
)
def test_percent_encoded_invalid_namespaces_are_400(
    service_url: str, new_tenant: NewTenant, path: str
) -> None:
    _, key = new_tenant()
    for method in ("POST", "GET"):
        status, body, _ = request(service_url, method, "/v1/misc/counter/" + path, key)
        assert status == 400 and body["error"] == "bad_request"
        assert body["message"] == INVALID_NAMESPACE


def test_errors_over_http(service_url: str, new_tenant: NewTenant) -> None:
    _, key = new_tenant()
    assert request(service_url, "POST", "/v1/misc/counter/x")[1]["error"] == "unauthorized"
    assert request(service_url, "GET", "/nowhere", key)[1]["error"] == "not_found"
    status, body, headers = request(service_url, "PATCH", "/v1/misc/counter/x", key)
    assert status == 405 and body["error"] == "method_not_allowed" and "POST" in headers["allow"]


def test_16_threads_x_100_over_http_are_exact(service_url: str, new_tenant: NewTenant) -> None:
    _, key = new_tenant()
    path = "/v1/misc/counter/hot"
    start = request(service_url, "GET", path, key)[1]["data"]["value"]
    values = hammer(service_url, path, key, threads=16, each=100)
    assert sorted(values) == list(range(start + 1, start + 1601))
    assert request(service_url, "GET", path, key)[1]["data"]["value"] == start + 1600


def test_sigterm_shuts_down_gracefully(settings: Settings, tmp_path: Path) -> None:
    server = Gunicorn(settings_env(settings), tmp_path / "g.log")
    server.wait_ready()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT])
def test_a_stop_while_a_worker_boots_exits_0_at_once(tmp_path: Path, sig: int) -> None:
    """The worker is inside an import (``__set_name__``, see slow_boot_app) when the master
    passes the stop on: it must exit 0 at once, not look like a worker that failed to boot
    (the master then exited 1: a clean-clone CI run met it) nor boot on and serve."""
    log = tmp_path / "g.log"
    worker = "service.api.worker.CounterWorker"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "gunicorn"), "-k", worker, "-w", "1", "-b", f"127.0.0.1:{free_port()}"]
            + ["--no-control-socket", "tests.e2e.slow_boot_app:app"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 20
    while "Booting worker" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # well inside the worker's import (5 s)
    start = time.monotonic()
    proc.send_signal(sig)
    try:
        status = proc.wait(30)
    finally:
        proc.kill()
    text = log.read_text()
    assert status == 0, text[-3000:]
    assert time.monotonic() - start < 3, text[-3000:]  # not after the boot's 5 s
    assert "stopped by" in text and "while booting" in text, text[-3000:]
    assert "failed to boot" not in text and "Exception in worker" not in text


def refused_start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run gunicorn as configured by ``env``; it must exit at once with an error."""
    proc = subprocess.run(
        [str(BIN / "gunicorn"), "-c", "python:service.gunicorn_conf", "service.wsgi:app"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    return proc


def test_a_bad_setting_stops_the_service_with_one_clear_line(settings: Settings) -> None:
    env = settings_env(settings, COUNTER_BUCKETS="lots", COUNTER_BIND="127.0.0.1:1")
    proc = refused_start(env)
    assert "COUNTER_BUCKETS='lots' is invalid" in proc.stderr


def test_a_second_instance_on_a_served_port_refuses_to_start(
    service_url: str, settings: Settings
) -> None:
    """SO_REUSEPORT would let it share the port's traffic silently; it must fail instead."""
    port = urlsplit(service_url).port
    env = settings_env(settings, COUNTER_BIND=f"127.0.0.1:{port}")
    proc = refused_start(env)
    assert f"127.0.0.1:{port} is already in use" in proc.stderr


def test_a_mismatched_bucket_count_refuses_to_start(settings: Settings, tmp_path: Path) -> None:
    server = Gunicorn(settings_env(settings, COUNTER_BUCKETS="1024"), tmp_path / "g.log")
    assert server.proc.wait(60) != 0
    assert "refusing to start" in server.log.read_text()


def test_counterctl_creates_lists_and_revokes_keys(settings: Settings) -> None:
    env = settings_env(settings)
    tenant = f"cli{int(time.time() * 1000)}"

    def ctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "counterctl"), *args], env=env, capture_output=True, text=True, timeout=60
        )

    created = ctl("keys", "create", "--tenant", tenant)
    key = created.stdout.strip().splitlines()[-1]
    assert created.returncode == 0 and key.startswith("ck_") and len(key) > 40
    listing = ctl("keys", "list", "--tenant", tenant)
    assert tenant in listing.stdout and key not in listing.stdout  # never the key itself
    key_id = listing.stdout.strip().splitlines()[-1].split()[0]
    assert ctl("keys", "revoke", key_id).returncode == 0
    assert "revoked" in ctl("keys", "list", "--tenant", tenant).stdout
    assert ctl("keys", "revoke", key_id).returncode == 1
    assert ctl("keys", "create", "--tenant", "bad/tenant").returncode == 2
    assert ctl("migrate").stdout.startswith("migrations applied: none")


def test_every_worker_has_a_listener_of_its_own_and_takes_connections(
    settings: Settings, tmp_path: Path, new_tenant: NewTenant
) -> None:
    """SO_REUSEPORT listeners per worker, and new connections steered to them, never to
    the master's listener (service/api/steering.py): with the workers stopped, the
    kernel's accept queues show where each new connection went."""
    import psutil

    _, key = new_tenant()
    server = Gunicorn(settings_env(settings, COUNTER_WORKERS="2"), tmp_path / "g.log")
    try:
        server.wait_ready()
        workers = wait_listening(server, 2)
        conns, queued = queue_requests(server, workers, key, 60)
        assert queued["shared"] == 0, queued
        assert sum(queued["own"]) == 60 and min(queued["own"]) >= 15, queued
        for conn in conns:
            assert conn.getresponse().status == 200
        held = [
            sum(
                1
                for c in w.net_connections(kind="tcp")
                if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == server.port
            )
            for w in workers
        ]
        assert held == queued["own"], (held, queued)
        for conn in conns:
            conn.close()
    finally:
        server.stop()


def test_a_worker_added_with_ttin_is_steered_connections_too(
    settings: Settings, tmp_path: Path, new_tenant: NewTenant
) -> None:
    """SIGTTIN adds a worker: the steering is redone for three (nworkers_changed), so the
    new worker's listener gets its share instead of none."""
    _, key = new_tenant()
    server = Gunicorn(settings_env(settings, COUNTER_WORKERS="2"), tmp_path / "g.log")
    try:
        server.wait_ready()
        wait_listening(server, 2)
        server.proc.send_signal(signal.SIGTTIN)
        workers = wait_listening(server, 3)
        conns, queued = queue_requests(server, workers, key, 90)
        assert queued["shared"] == 0 and min(queued["own"]) >= 15, queued
        for conn in conns:
            assert conn.getresponse().status == 200
            conn.close()
    finally:
        server.stop()


def wait_listening(server: Gunicorn, n: int) -> list[Any]:
    """The ``n`` workers, once each holds both its listeners."""
    deadline = time.monotonic() + 15
    while len(workers := listening_workers(server)) != n:
        assert time.monotonic() < deadline, workers
        time.sleep(0.05)
    return workers


def queue_requests(
    server: Gunicorn, workers: list[Any], key: str, n: int
) -> tuple[list[http.client.HTTPConnection], dict[str, Any]]:
    """Send ``n`` requests on new connections while the workers are stopped; how many
    wait on the master's listener (``shared``) and on each worker's own (``own``)."""
    (shared,) = listener_inodes(server.proc.pid, server.port)
    own = [(listener_inodes(w.pid, server.port) - {shared}).pop() for w in workers]
    parts = urlsplit(server.url)
    for w in workers:
        w.suspend()
    try:  # the kernel completes the handshakes and queues the connections
        conns = [
            http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
            for _ in range(n)
        ]
        for conn in conns:  # with data: meinheld's listeners defer accept until it comes
            conn.request("POST", "/v1/misc/counter/spread", headers={"requiems-api-key": key})
        time.sleep(0.2)
        queues = accept_queues(server.port)
    finally:
        for w in workers:
            w.resume()
    return conns, {"shared": queues.get(shared, 0), "own": [queues.get(i, 0) for i in own]}


def listener_inodes(pid: int, port: int) -> set[int]:
    """Inodes of the listening sockets on ``port`` that process ``pid`` holds."""
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue
        if target.startswith("socket:["):
            held.add(int(target[8:-1]))
    return held & set(accept_queues(port))


def accept_queues(port: int) -> dict[int, int]:
    """Listening sockets on ``port``: inode -> connections waiting to be accepted."""
    queues = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                queues[int(f[9])] = int(f[4].split(":")[1], 16)  # inode, rx_queue
    return queues


def increments_metric(url: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    found = re.search(r"^counter_increments_total (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def increments_pushed(metrics_dir: Path) -> float:
    """counter_increments_total as the workers' files hold it, read without a scrape
    (a scrape would make the worker answering it push its own count at once)."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))
    return sum(
        s.value
        for m in registry.collect()
        for s in m.samples
        if s.name == "counter_increments_total"
    )


def test_increments_reach_the_metric_within_about_a_second(
    cluster_settings: Settings, tmp_path: Path, new_tenant: NewTenant
) -> None:
    """Each worker pushes its count by a timer, about once a second: watched in the
    metric files of a server of our own (they start empty, so nothing counted earlier
    is still on its way), then scraped."""
    _, key = new_tenant()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = settings_env(cluster_settings, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    server = Gunicorn(env, tmp_path / "g.log")
    try:
        server.wait_ready()
        assert increments_pushed(metrics_dir) == 0
        for _ in range(5):
            assert request(server.url, "POST", "/v1/misc/counter/metered", key)[0] == 200
        sent = time.monotonic()
        deadline = sent + 30
        while increments_pushed(metrics_dir) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        took = time.monotonic() - sent
        assert increments_pushed(metrics_dir) == 5
        assert took < 5, took  # "about a second", with room for a loaded machine
        assert increments_metric(server.url) == 5
    finally:
        server.stop()


def test_a_metrics_directory_the_service_made_goes_with_it(
    cluster_settings: Settings, tmp_path: Path
) -> None:
    """Without PROMETHEUS_MULTIPROC_DIR the master makes a directory for the workers'
    metric files; stopping the service removes it, and a start refused (its port served)
    makes none (each start used to leave one)."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = settings_env(cluster_settings, TMPDIR=str(temp))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = Gunicorn(env, tmp_path / "g.log")
    try:
        server.wait_ready()
        made = list(temp.glob("counter-metrics-*"))
        assert len(made) == 1 and any(made[0].iterdir()), made  # the workers' files
        refused = refused_start({**env, "COUNTER_BIND": f"127.0.0.1:{server.port}"})
        assert "is already in use" in refused.stderr
        assert list(temp.glob("counter-metrics-*")) == made
    finally:
        assert server.stop() == 0
    assert list(temp.glob("counter-metrics-*")) == []


def test_metrics_are_summed_over_all_workers(
    cluster_settings: Settings, tmp_path: Path, new_tenant: NewTenant
) -> None:
    """60 increments spread over 2 workers: every scrape, whichever worker answers, says 60."""
    import psutil

    _, key = new_tenant()
    server = Gunicorn(settings_env(cluster_settings, COUNTER_WORKERS="2"), tmp_path / "g.log")
    try:
        server.wait_ready()
        parts = urlsplit(server.url)
        conns = [
            http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
            for _ in range(60)
        ]
        for conn in conns:
            conn.request("POST", "/v1/misc/counter/summed", headers={"requiems-api-key": key})
            assert conn.getresponse().read()
        workers = psutil.Process(server.proc.pid).children()
        served = [
            sum(
                1
                for c in w.net_connections(kind="tcp")
                if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == server.port
            )
            for w in workers
        ]
        assert min(served) > 0, served  # both workers counted some of them
        for conn in conns:
            conn.close()
        deadline = time.monotonic() + 30  # each worker adds its count about once a second
        while increments_metric(server.url) < 60 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [increments_metric(server.url) for _ in range(10)] == [60.0] * 10
    finally:
        server.stop()


@pytest.mark.parametrize("worker_class", ["gthread", "sync"])
def test_the_gthread_and_sync_workers_serve_the_api(
    cluster_settings: Settings, tmp_path: Path, new_tenant: NewTenant, worker_class: str
) -> None:
    _, key = new_tenant()
    env = settings_env(cluster_settings, COUNTER_WORKER_CLASS=worker_class, COUNTER_WORKERS="1")
    server = Gunicorn(env, tmp_path / "g.log")
    try:
        server.wait_ready()
        for expected in (1, 2):
            status, body, _ = request(server.url, "POST", "/v1/misc/counter/plain", key)
            assert (status, body["data"]["value"]) == (200, expected)
        assert request(server.url, "GET", "/v1/misc/counter/plain", key)[1]["data"]["value"] == 2
        assert increments_metric(server.url) == 2  # no meinheld timer: counted at once
    finally:
        assert server.stop() == 0
    assert "meinheld" not in server.log.read_text()  # no warning: meinheld is not involved
