"""The lean client looks a seed's host name up once per ``RESOLVE_TTL``, then again.

docs/liveness.md: "Host names are looked up (blocking) once a minute at most". A lookup
blocks the worker's loop, so it must not happen per connection; and a name must be
looked up again later, or a node that moves to a new address is never found. Real
connections to a real Redis by the name ``localhost``, made as in a meinheld worker
(through a loop: ``tests.greenloop``; a thread's blocking connect resolves each time,
blocking only itself); the resolver is the real one, only watched (each call is
counted and passed through).
"""

from __future__ import annotations

import socket
import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from service.fastpath import resp
from service.fastpath.resp import NodeConnection, pack
from tests.greenloop import GreenLoop


def test_a_host_name_is_looked_up_once_per_ttl_then_again(
    redis_single_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resp.RESOLVE_TTL == 60  # "once a minute at most"; shortened below to watch it
    addr = ("localhost", urlsplit(redis_single_url).port or 6379)
    lookups: list[str] = []
    real = socket.getaddrinfo

    def counted(host: Any, *args: Any, **kwargs: Any) -> Any:
        lookups.append(host)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counted)
    monkeypatch.setattr(resp, "RESOLVE_TTL", 0.5)
    monkeypatch.delitem(resp._resolved, addr, raising=False)

    loop = GreenLoop()

    def ping_on_a_new_connection() -> None:
        conn = NodeConnection(addr, 5, loop.wait_readable, loop.wait_io)
        try:
            assert loop.run(lambda: conn.call(pack("PING"))) == [b"PONG"]
        finally:
            conn.close()

    ping_on_a_new_connection()
    assert lookups == ["localhost"]
    for _ in range(5):  # new connections within the TTL: the address is reused
        ping_on_a_new_connection()
    assert lookups == ["localhost"]
    expires = resp._resolved[addr][0]
    while time.monotonic() <= expires:  # the entry's own expiry, not a guessed sleep
        time.sleep(0.05)
    ping_on_a_new_connection()
    assert lookups == ["localhost"] * 2  # looked up again
    ping_on_a_new_connection()
    assert lookups == ["localhost"] * 2
