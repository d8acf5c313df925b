"""The reuseport steering program, on real sockets of this kernel (no server needed)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from service.api.steering import program, steer_to_workers


def listeners(stack: ExitStack, n: int) -> list[socket.socket]:
    """``n`` SO_REUSEPORT listeners on one free port, in the order they joined."""
    out: list[socket.socket] = []
    for _ in range(n):
        sock = stack.enter_context(socket.socket())
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", out[0].getsockname()[1] if out else 0))
        sock.listen(512)
        sock.setblocking(False)
        out.append(sock)
    return out


def accepted(socks: list[socket.socket], n: int) -> list[int]:
    """Open ``n`` connections to the group; how many each listener has to accept."""
    port = socks[0].getsockname()[1]
    with ExitStack() as clients:
        for _ in range(n):
            clients.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
        counts = []
        for sock in socks:
            count = 0
            for conn in _drain(sock):
                conn.close()
                count += 1
            counts.append(count)
    return counts


def _drain(sock: socket.socket) -> Iterator[socket.socket]:
    while True:
        try:
            yield sock.accept()[0]
        except BlockingIOError:
            return


def test_the_first_listener_gets_nothing_and_the_others_share() -> None:
    with ExitStack() as stack:
        socks = listeners(stack, 3)  # the master's, then two workers'
        steer_to_workers(socks[0], 2)
        counts = accepted(socks, 200)
    assert counts[0] == 0 and sum(counts) == 200 and min(counts[1:]) >= 60, counts


def test_an_index_past_the_group_falls_back_to_the_kernels_hash() -> None:
    """A worker restarting (its listener gone): nothing is lost, the master's takes some."""
    with ExitStack() as stack:
        socks = listeners(stack, 2)  # the master's and one worker's, steered as for two
        steer_to_workers(socks[1], 2)
        counts = accepted(socks, 200)
    assert sum(counts) == 200 and min(counts) > 0, counts


def test_the_program_needs_a_worker() -> None:
    with pytest.raises(ValueError):
        program(0)
