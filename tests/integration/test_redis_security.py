"""Redis AUTH and TLS on both clients, one node and a cluster, against real servers.

The servers demand what managed services do (``devstack/secure_redis.py``): TLS with
client certificates and an ACL user, the default user switched off; a node with
only ``requirepass``; a 3-master cluster whose bus speaks TLS too.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from greenlet import getcurrent

from devstack.secure_redis import PASSWORD, REQUIREPASS, USER, Certs, SecureRedis, make_certs
from service import keys
from service.errors import BackendUnavailable
from service.fastpath.handshake import handshake_for
from service.fastpath.pipeline import PipelinedNode
from service.fastpath.resp import ConnectionLost, open_socket, pack
from service.flusher.redis_side import RedisSide
from service.redis_conn import connect
from service.settings import Settings
from tests.builders import make_store
from tests.greenloop import GreenLoop


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureRedis]:
    base = tmp_path_factory.mktemp("secure-redis")
    servers = SecureRedis(base, make_certs(base / "certs"))
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture(scope="module")
def tls_single(secure: SecureRedis) -> int:
    return secure.start_single_tls_acl()


@pytest.fixture(scope="module")
def tls_cluster(secure: SecureRedis) -> list[int]:
    return secure.start_cluster_tls_acl()


@pytest.fixture(scope="module")
def password_single(secure: SecureRedis) -> int:
    return secure.start_single_requirepass()


def tls_env(certs: Certs, **extra: str) -> dict[str, str]:
    return {
        "COUNTER_REDIS_TLS": "1",
        "COUNTER_REDIS_TLS_CA": str(certs.ca),
        "COUNTER_REDIS_TLS_CERT": str(certs.client_cert),
        "COUNTER_REDIS_TLS_KEY": str(certs.client_key),
        "COUNTER_REDIS_USERNAME": USER,
        "COUNTER_REDIS_PASSWORD": PASSWORD,
        **extra,
    }


def settings_for(pg_dsn: str, env: dict[str, str]) -> Settings:
    return Settings.from_env({"COUNTER_PG_DSN": pg_dsn, "COUNTER_REDIS_TIMEOUT": "3", **env})


def count_to(settings: Settings, n: int, namespaces: int = 1) -> list[int]:
    """Increment ``namespaces`` new counters ``n`` times each through the store."""
    store = make_store(settings)
    tenant = f"tls{uuid.uuid4().hex[:10]}"
    try:
        values = [store.increment(tenant, f"ns{i}") for i in range(namespaces) for _ in range(n)]
        assert all(store.get(tenant, f"ns{i}") == n for i in range(namespaces))
        return values
    finally:
        store.close()


@pytest.mark.parametrize("client", ["lean", "redis-py"])
def test_one_node_over_tls_with_an_acl_user(
    secure: SecureRedis, tls_single: int, pg_dsn: str, client: str
) -> None:
    url = f"redis://127.0.0.1:{tls_single}/0"
    env = tls_env(secure.certs, COUNTER_REDIS_URL=url, COUNTER_REDIS_CLIENT=client)
    assert count_to(settings_for(pg_dsn, env), 20) == list(range(1, 21))


@pytest.mark.parametrize("client", ["lean", "redis-py"])
def test_a_cluster_over_tls_with_an_acl_user(
    secure: SecureRedis, tls_cluster: list[int], pg_dsn: str, client: str
) -> None:
    nodes = ",".join(f"127.0.0.1:{p}" for p in tls_cluster)
    env = tls_env(secure.certs, COUNTER_REDIS_NODES=nodes, COUNTER_REDIS_CLIENT=client)
    values = count_to(settings_for(pg_dsn, env), 5, namespaces=30)
    assert values == list(range(1, 6)) * 30
    with secure.client(tls_cluster[0], username=USER, password=PASSWORD) as r:
        spread = [secure.client(p, username=USER, password=PASSWORD).dbsize() for p in tls_cluster]
        assert r.ping()
    assert all(n > 0 for n in spread), spread  # 30 counters reached every master


@pytest.mark.parametrize("client", ["lean", "redis-py"])
def test_a_password_alone_is_sent_as_auth_password(
    password_single: int, pg_dsn: str, client: str
) -> None:
    env = {
        "COUNTER_REDIS_URL": f"redis://127.0.0.1:{password_single}/0",
        "COUNTER_REDIS_PASSWORD": REQUIREPASS,
        "COUNTER_REDIS_CLIENT": client,
    }
    assert count_to(settings_for(pg_dsn, env), 3) == [1, 2, 3]


def refused(settings: Settings, caplog: pytest.LogCaptureFixture) -> str:
    """The error an increment gets; the logs must not hold the password either."""
    store = make_store(settings)
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(BackendUnavailable) as info:
            store.increment("t", "x")
    finally:
        store.close()
    assert PASSWORD not in caplog.text and REQUIREPASS not in caplog.text
    return str(info.value)


@pytest.mark.parametrize("client", ["lean", "redis-py"])
def test_a_wrong_password_is_refused_and_never_shown(
    secure: SecureRedis,
    tls_single: int,
    pg_dsn: str,
    client: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://127.0.0.1:{tls_single}/0"
    wrong = PASSWORD + "-wrong"
    env = tls_env(secure.certs, COUNTER_REDIS_URL=url, COUNTER_REDIS_CLIENT=client)
    message = refused(settings_for(pg_dsn, {**env, "COUNTER_REDIS_PASSWORD": wrong}), caplog)
    assert wrong not in message and wrong not in caplog.text


@pytest.mark.parametrize("client", ["lean", "redis-py"])
def test_without_auth_the_server_refuses_everything(
    secure: SecureRedis,
    tls_single: int,
    pg_dsn: str,
    client: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The servers here really demand AUTH: a client that skips it gets nothing done."""
    env = tls_env(
        secure.certs,
        COUNTER_REDIS_URL=f"redis://127.0.0.1:{tls_single}/0",
        COUNTER_REDIS_CLIENT=client,
    )
    del env["COUNTER_REDIS_USERNAME"], env["COUNTER_REDIS_PASSWORD"]
    refused(settings_for(pg_dsn, env), caplog)


@pytest.mark.parametrize("client", ["lean", "redis-py"])
def test_a_server_certificate_from_another_ca_is_refused(
    secure: SecureRedis,
    tls_single: int,
    pg_dsn: str,
    client: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = tls_env(
        secure.certs,
        COUNTER_REDIS_URL=f"redis://127.0.0.1:{tls_single}/0",
        COUNTER_REDIS_CLIENT=client,
        COUNTER_REDIS_TLS_CA=str(secure.certs.other_ca),
    )
    settings = settings_for(pg_dsn, env)
    refused(settings, caplog)
    with pytest.raises(ConnectionLost, match="certificate verify failed"):
        open_socket(("127.0.0.1", tls_single), 3, None, handshake_for(settings))


def test_a_host_name_the_certificate_does_not_name_is_refused(
    secure: SecureRedis, tls_single: int, pg_dsn: str
) -> None:
    # The certificate names 127.0.0.1 and localhost: 127.0.0.2 reaches the same server.
    settings = settings_for(pg_dsn, tls_env(secure.certs, COUNTER_REDIS_URL="redis://h:1/0"))
    with pytest.raises(ConnectionLost, match="(?i)certificate|mismatch|match"):
        open_socket(("127.0.0.2", tls_single), 3, None, handshake_for(settings))
    sock = open_socket(("127.0.0.1", tls_single), 3, None, handshake_for(settings))
    sock.close()


def pipelined(settings: Settings, port: int, loop: GreenLoop) -> PipelinedNode:
    return PipelinedNode(("127.0.0.1", port), 5, loop.hooks, handshake=handshake_for(settings))


def task(pipe: PipelinedNode, *parts: str | int | bytes) -> Callable[[], Any]:
    return lambda: pipe.call(pack(*parts), getcurrent())


def test_the_pipelined_connection_batches_over_tls(
    secure: SecureRedis, tls_single: int, pg_dsn: str
) -> None:
    """Handshake and AUTH through the loop; 50 commands of one turn in one send."""
    url = f"redis://127.0.0.1:{tls_single}/0"
    settings = settings_for(pg_dsn, tls_env(secure.certs, COUNTER_REDIS_URL=url))
    key = f"tls:{uuid.uuid4().hex}"
    loop = GreenLoop()
    pipe = pipelined(settings, tls_single, loop)
    values = loop.run(*[task(pipe, "INCR", key)] * 50)
    assert sorted(values) == list(range(1, 51))
    assert loop.flushes == 1
    pipe.close()


def test_a_command_larger_than_the_socket_buffers_goes_whole_over_tls(
    secure: SecureRedis, tls_single: int, pg_dsn: str
) -> None:
    """16 MB: TLS writes that would block are finished by the drain, replies read in records."""
    url = f"redis://127.0.0.1:{tls_single}/0"
    settings = settings_for(pg_dsn, tls_env(secure.certs, COUNTER_REDIS_URL=url))
    big = b"x" * (16 << 20)
    key = f"tls:big:{uuid.uuid4().hex}"
    loop = GreenLoop()
    pipe = pipelined(settings, tls_single, loop)
    out = loop.run(
        task(pipe, "SET", key, big),
        task(pipe, "STRLEN", key),
        task(pipe, "GET", key),
        *[task(pipe, "INCR", key + ":n")] * 20,
    )
    assert out[0] == b"OK" and out[1] == len(big) and out[2] == big
    assert sorted(out[3:]) == list(range(1, 21))
    pipe.close()


@pytest.mark.parametrize("through_loop", [False, True])
def test_a_handshake_that_never_completes_fails_within_the_timeout(
    secure: SecureRedis, pg_dsn: str, through_loop: bool, tmp_path: Path
) -> None:
    """A listener that accepts TCP and then says nothing: TLS waits out its deadline."""
    settings = settings_for(pg_dsn, tls_env(secure.certs, COUNTER_REDIS_URL="redis://h:1/0"))
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)  # never accepted: the kernel completes the connect, nobody answers
        addr = mute.getsockname()
        start = time.monotonic()
        if through_loop:
            loop = GreenLoop()
            [result] = loop.run(lambda: open_socket(addr, 1, loop.wait_io, handshake_for(settings)))
            assert isinstance(result, ConnectionLost), result
        else:
            with pytest.raises(ConnectionLost):
                open_socket(addr, 1, None, handshake_for(settings))
        assert time.monotonic() - start < 4


def test_redis_py_gets_the_same_credentials_and_tls(
    secure: SecureRedis, tls_single: int, pg_dsn: str
) -> None:
    """The flusher and tools use redis-py (service.redis_conn.connect) with the same settings."""
    url = f"redis://127.0.0.1:{tls_single}/0"
    client = connect(settings_for(pg_dsn, tls_env(secure.certs, COUNTER_REDIS_URL=url)))
    try:
        assert client.execute_command("ACL", "WHOAMI") in (USER, USER.encode())
        # The flusher's raw scan reads replies off redis-py's socket itself: TLS too.
        client.zadd(keys.bucket_keys(3).dirty, {"t/a": 5, "t/b": 7})
        side = RedisSide(client, 16)
        assert side.dirty_heads(range(16)) == ({3: 2}, 5.0)
        client.delete(keys.bucket_keys(3).dirty)
    finally:
        client.close()
