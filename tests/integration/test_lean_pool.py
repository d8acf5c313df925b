"""LeanRedis's connection pool: connections are lent per call and dead ones do not linger."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from service.fastpath.lean_redis import LeanRedis, PerNode
from service.fastpath.resp import ConnectionLost, pack
from service.settings import Settings

SLOT = 0
WAIT_200MS = pack("WAIT", 1, 200)  # no replicas: blocks 200 ms server-side, then answers 0


def test_a_lost_connection_drops_the_nodes_idle_ones(cluster_settings: Settings) -> None:
    client = LeanRedis(cluster_settings.redis_nodes, cluster=True, timeout=5)
    addr = client.refresh_slots()[SLOT]
    assert addr is not None
    with ThreadPoolExecutor(4) as pool:  # four calls at once: four connections
        assert list(pool.map(lambda _: client.execute(SLOT, WAIT_200MS), range(4))) == [0] * 4
    idle = client._idle[addr]
    assert len(idle) == 4
    # The node drops them all, as a restart would.
    node = redis.Redis(host=addr[0], port=addr[1])
    for conn in idle:
        host, port = conn._sock.getsockname()[:2]  # type: ignore[union-attr]
        node.client_kill(f"{host}:{port}")
    node.close()

    with pytest.raises(ConnectionLost):  # the first call finds out: outcome unknown, not re-sent
        client.execute(SLOT, pack("PING"))
    # The other three dead connections went with it: the next call works.
    assert client.execute(SLOT, pack("PING")) == b"PONG"
    client.close()


def test_a_batch_of_calls_to_every_master_leaves_in_one_loop_turn(
    cluster_settings: Settings,
) -> None:
    """``execute_many`` in a request: one call per master, every one queued before the
    request first waits for a reply (called one after another, one would be)."""
    from tests.greenloop import GreenLoop

    loop = GreenLoop()
    queued_at_first_wait: list[int] = []
    wait_readable = loop.wait_readable

    def noting_wait(fd: int, timeout: float) -> None:
        queued_at_first_wait.append(loop.flushes)
        wait_readable(fd, timeout)

    loop.wait_readable = noting_wait  # type: ignore[method-assign]
    client = LeanRedis(cluster_settings.redis_nodes, cluster=True, timeout=5, hooks=loop.hooks)
    table = client.refresh_slots()
    slots = [
        next(s for s, a in enumerate(table) if a == addr)
        for addr in sorted({a for a in table if a})
    ]
    assert len(slots) == 3
    calls: list[tuple[int, bytes | PerNode, bool]] = [(slot, pack("PING"), False) for slot in slots]
    loop.run(lambda: client.execute_many(calls))  # connects to every master
    queued_at_first_wait.clear()
    before = loop.flushes
    (replies,) = loop.run(lambda: client.execute_many(calls))
    assert replies == [b"PONG"] * 3
    assert queued_at_first_wait[0] - before == 3
    client.close()
