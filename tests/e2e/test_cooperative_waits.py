"""Under meinheld, a request waiting on Redis does not hold up the worker's other requests,
and the requests in flight to one node share one pipelined connection.

One worker only, so with blocking Redis IO every request below would queue
behind the one waiting on a busy node (``tests.helpers.keep_busy``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service import keys
from service.redis_conn import connect
from service.settings import Settings
from tests.builders import NewTenant
from tests.e2e.http_client import hammer, post_in_background, request
from tests.e2e.server import Gunicorn, settings_env
from tests.helpers import keep_busy, node_of


@pytest.fixture
def one_worker(cluster_settings: Settings, tmp_path: Path) -> Iterator[Gunicorn]:
    env = settings_env(cluster_settings, COUNTER_WORKERS="1", COUNTER_REDIS_TIMEOUT="1")
    server = Gunicorn(env, tmp_path / "gunicorn.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def cluster_client(cluster_settings: Settings) -> Iterator[Any]:
    client = connect(cluster_settings)
    yield client
    client.close()


def values_key(tenant: str, ns: str, n_buckets: int) -> str:
    return keys.bucket_keys(keys.bucket_of(tenant, ns, n_buckets)).values


def namespaces_on_two_nodes(rclient: Any, tenant: str, n_buckets: int) -> tuple[str, str, Any]:
    """A namespace on some node, one on another node, and the first one's node client."""
    nodes: dict[tuple[str, int], str] = {}
    for i in range(200):
        ns = f"ns-{i}"
        node = rclient.get_node_from_key(values_key(tenant, ns, n_buckets))
        nodes.setdefault((node.host, node.port), ns)
        if len(nodes) == 2:
            busy_ns, free_ns = nodes.values()
            return busy_ns, free_ns, node_of(rclient, values_key(tenant, busy_ns, n_buckets))
    raise AssertionError("200 namespaces all on one node")


def test_other_requests_are_served_while_one_waits_on_redis(
    one_worker: Gunicorn, cluster_settings: Settings, cluster_client: Any, new_tenant: NewTenant
) -> None:
    tenant, key = new_tenant()
    busy_ns, free_ns, busy_node = namespaces_on_two_nodes(
        cluster_client, tenant, cluster_settings.buckets
    )
    url = one_worker.url
    assert request(url, "POST", f"/v1/misc/counter/{busy_ns}", key)[0] == 200  # connections warm

    busy = keep_busy(busy_node, 800)  # less than the 1 s timeout
    waiting, result = post_in_background(url, f"/v1/misc/counter/{busy_ns}", key)
    started = time.monotonic()
    status, body, _ = request(url, "POST", f"/v1/misc/counter/{free_ns}", key)
    served_in = time.monotonic() - started
    # Served while the busy node still ran its script: not queued behind the waiting one.
    assert busy.is_alive(), f"the free node's request waited {served_in:.2f} s for the busy one"
    assert status == 200 and body["data"]["value"] == 1
    assert request(url, "GET", "/healthz")[0] == 200

    waiting.join(10)
    busy.join(10)
    assert result and result[0][0] == 200 and result[0][1]["data"]["value"] == 2


def test_a_timed_out_wait_answers_503_and_the_increment_applies_once(
    one_worker: Gunicorn, cluster_settings: Settings, cluster_client: Any, new_tenant: NewTenant
) -> None:
    tenant, key = new_tenant()
    busy_ns, _, busy_node = namespaces_on_two_nodes(
        cluster_client, tenant, cluster_settings.buckets
    )
    path = f"/v1/misc/counter/{busy_ns}"
    assert request(one_worker.url, "POST", path, key)[1]["data"]["value"] == 1

    busy = keep_busy(busy_node, 3500)  # past the 1 s timeout, which meinheld ends by 3 s
    waiting, result = post_in_background(one_worker.url, path, key)
    waiting.join(10)
    busy.join(10)
    assert result and result[0][0] == 503 and result[0][1]["error"] == "unavailable"
    # The node ran the buffered increment once it was free; nothing re-sent it.
    time.sleep(0.2)
    assert request(one_worker.url, "GET", path, key)[1]["data"]["value"] == 2
    assert request(one_worker.url, "POST", path, key)[1]["data"]["value"] == 3


def hot_path_connections(node: Any) -> int:
    """Connections to ``node`` whose last command was the increment script."""
    return sum(1 for c in node.client_list() if c["cmd"] == "evalsha")


def test_requests_in_flight_share_one_pipelined_connection_per_node(
    one_worker: Gunicorn, cluster_settings: Settings, cluster_client: Any, new_tenant: NewTenant
) -> None:
    tenant, key = new_tenant()
    path = "/v1/misc/counter/hot"
    node = node_of(cluster_client, values_key(tenant, "hot", cluster_settings.buckets))
    assert request(one_worker.url, "POST", path, key)[1]["data"]["value"] == 1
    values = hammer(one_worker.url, path, key, threads=16, each=60)
    # Every reply reached its own request: distinct, gap-free values.
    assert sorted(values) == list(range(2, 2 + 16 * 60))
    # 16 requests in flight at once, one connection: a pool would have opened many.
    assert hot_path_connections(node) == 1


def test_a_timeout_fails_every_request_in_flight_on_the_connection(
    one_worker: Gunicorn, cluster_settings: Settings, cluster_client: Any, new_tenant: NewTenant
) -> None:
    tenant, key = new_tenant()
    busy_ns, _, busy_node = namespaces_on_two_nodes(
        cluster_client, tenant, cluster_settings.buckets
    )
    path = f"/v1/misc/counter/{busy_ns}"
    assert request(one_worker.url, "POST", path, key)[1]["data"]["value"] == 1

    busy = keep_busy(busy_node, 3500)  # past the 1 s timeout, which meinheld ends by 3 s
    # Three requests on one pipelined connection, sent in different loop turns: the
    # first reads, the other two are parked behind it.
    waiting = [post_in_background(one_worker.url, path, key) for _ in range(3)]
    for thread, _ in waiting:
        thread.join(10)
    busy.join(10)
    for _, result in waiting:
        assert result and result[0][0] == 503 and result[0][1]["error"] == "unavailable"
    # The node ran all three buffered increments once it was free; nothing re-sent them.
    time.sleep(0.2)
    assert request(one_worker.url, "GET", path, key)[1]["data"]["value"] == 4
    assert request(one_worker.url, "POST", path, key)[1]["data"]["value"] == 5
