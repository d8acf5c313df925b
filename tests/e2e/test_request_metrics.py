"""RED metrics through gunicorn + meinheld: known requests, the values ``/metrics`` shows.

Two workers, each pushing what it measured once a second, so the values are summed
across processes the way Prometheus scrapes them (issue 13, item 6).
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service import keys
from service.redis_conn import connect
from service.settings import Settings
from tests.builders import NewTenant
from tests.e2e.http_client import request
from tests.e2e.server import Gunicorn, settings_env
from tests.helpers import keep_busy, node_of

ROUTE = "/v1/misc/counter/{namespace:path}"
CLIENTS = 40


@pytest.fixture
def server(cluster_settings: Settings, tmp_path: Path) -> Iterator[Gunicorn]:
    env = settings_env(cluster_settings, COUNTER_REDIS_TIMEOUT="10")  # a busy node is no outage
    gunicorn = Gunicorn(env, tmp_path / "gunicorn.log")
    try:
        gunicorn.wait_ready()
        yield gunicorn
    finally:
        gunicorn.stop()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """``/metrics`` as ``{(name, labels): value}``."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(m: Samples, name: str, **labels: str) -> float:
    return m[(name, frozenset(labels.items()))]


def duration(m: Samples, part: str, route: str, method: str, status: str, **le: str) -> float:
    labels = {"route": route, "method": method, "status_class": status, **le}
    return value(m, f"counter_http_request_duration_seconds_{part}", **labels)


def test_request_latency_and_backend_calls_summed_over_workers(
    server: Gunicorn, new_tenant: NewTenant
) -> None:
    _, key = new_tenant()
    conns = [
        http.client.HTTPConnection("127.0.0.1", server.port, timeout=10) for _ in range(CLIENTS)
    ]
    for conn in conns:  # keep-alive connections, spread over both workers by the kernel
        for method in ("POST", "GET"):
            conn.request(method, "/v1/misc/counter/red", headers={"requiems-api-key": key})
            assert conn.getresponse().read()
    held = [
        sum(1 for c in w.net_connections(kind="tcp") if c.laddr.port == server.port)
        for w in psutil.Process(server.proc.pid).children()
    ]
    assert min(held) > 0, held  # both workers served some of them
    for conn in conns:
        conn.close()
    for _ in range(3):
        assert request(server.url, "GET", "/nowhere", key)[0] == 404
        assert request(server.url, "POST", "/v1/misc/counter/red")[0] == 401
        assert request(server.url, "GET", "/v1/misc/counter/a.b", key)[0] == 400
    time.sleep(2.5)  # each worker pushes within about a second
    m = scrape(server.url)
    assert duration(m, "count", ROUTE, "POST", "2xx") == CLIENTS
    assert duration(m, "count", ROUTE, "GET", "2xx") == CLIENTS
    assert duration(m, "bucket", ROUTE, "POST", "2xx", le="+Inf") == CLIENTS
    assert 0 < duration(m, "sum", ROUTE, "POST", "2xx") < CLIENTS * 5.0
    assert duration(m, "count", ROUTE, "POST", "4xx") == 3  # 401
    assert duration(m, "count", ROUTE, "GET", "4xx") == 3  # 400
    assert duration(m, "count", "unmatched", "GET", "4xx") == 3  # 404
    buckets = [
        v
        for (name, labels), v in m.items()
        if name.endswith("_bucket")
        and labels >= {("route", ROUTE), ("method", "GET"), ("status_class", "2xx")}
    ]
    assert len(buckets) == 15 and max(buckets) == CLIENTS  # 14 bounds and +Inf
    assert not [k for k in m if ("status_class", "5xx") in k[1]]
    redis_calls = value(m, "counter_backend_call_duration_seconds_count", backend="redis")
    pg_calls = value(m, "counter_backend_call_duration_seconds_count", backend="postgres")
    assert redis_calls >= 2 * CLIENTS  # one script call per POST and per GET at least
    assert 1 <= pg_calls <= 2 + 2 * 3  # the key and the counter's row, per worker
    inf = value(m, "counter_backend_call_duration_seconds_bucket", backend="redis", le="+Inf")
    assert inf == redis_calls
    assert value(m, "counter_http_requests_in_flight") == 1  # this scrape


def test_requests_in_flight_counts_requests_parked_on_redis(
    server: Gunicorn, cluster_settings: Settings, new_tenant: NewTenant
) -> None:
    tenant, key = new_tenant()
    assert request(server.url, "POST", "/v1/misc/counter/parked", key)[0] == 200
    bucket = keys.bucket_of(tenant, "parked", cluster_settings.buckets)
    cluster = connect(cluster_settings)
    try:
        busy = keep_busy(node_of(cluster, keys.bucket_keys(bucket).values), 4000)
        posts = [
            threading.Thread(
                target=request, args=(server.url, "POST", "/v1/misc/counter/parked", key)
            )
            for _ in range(6)
        ]
        for post in posts:
            post.start()
        time.sleep(2.5)  # both workers have pushed their count since the requests arrived
        assert value(scrape(server.url), "counter_http_requests_in_flight") == 6 + 1
        busy.join()
        for post in posts:
            post.join()
        time.sleep(2.2)
        assert value(scrape(server.url), "counter_http_requests_in_flight") == 1
    finally:
        cluster.close()
