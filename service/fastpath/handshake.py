"""What a new Redis connection does before its first command: TLS, then AUTH.

Managed Redis services require both. ``resp.open_socket`` runs the handshake on
every new connection, pooled or pipelined, within the connect's own deadline.
Given ``wait_io`` (meinheld's loop) the socket is non-blocking and every wait
(``SSLWantReadError``/``SSLWantWriteError`` during the TLS handshake, the AUTH
reply) goes through the loop: a node that stalls mid-handshake costs the waiting
request its timeout, never the worker. Without it, the socket blocks with the
time left as its timeout.

The password is only ever packed into the AUTH command: it is not in this
object's repr, and a refused AUTH is reported with Redis's reply, which never
echoes it.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import hiredis

from service.fastpath.resp import ReplyError, WaitIO, pack
from service.redis_conn import tls_context
from service.settings import Settings

T = TypeVar("T")


class HandshakeFailed(ConnectionError):
    """TLS or AUTH did not complete (refused, timed out or the node hung up)."""


@dataclass(frozen=True)
class Handshake:
    """TLS (``tls``) and AUTH (``password``, with ``username`` for an ACL user)."""

    tls: ssl.SSLContext | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def run(
        self, sock: socket.socket, host: str, deadline: float, wait_io: WaitIO | None
    ) -> socket.socket:
        """The connection ready for commands (an ``SSLSocket`` with TLS); closes it on failure."""
        timeout = sock.gettimeout()
        try:
            if self.tls is not None:
                sock = self.tls.wrap_socket(
                    sock, server_hostname=host, do_handshake_on_connect=False
                )
                _retry(sock.do_handshake, sock, deadline, wait_io, reading=True)
            if self.password is not None:
                _authenticate(sock, self.username, self.password, deadline, wait_io)
        except BaseException:
            sock.close()
            raise
        if wait_io is None:
            sock.settimeout(timeout)  # _retry shortened it to the time left
        return sock


def handshake_for(settings: Settings) -> Handshake | None:
    """The handshake ``settings`` ask for; None for a plain connection."""
    tls = tls_context(settings)
    if tls is None and settings.redis_password is None:
        return None
    return Handshake(tls, settings.redis_username, settings.redis_password)


def _authenticate(
    sock: socket.socket,
    username: str | None,
    password: str,
    deadline: float,
    wait_io: WaitIO | None,
) -> None:
    command = pack("AUTH", username, password) if username else pack("AUTH", password)
    view = memoryview(command)
    while view:
        sent = _retry(partial(sock.send, view), sock, deadline, wait_io, reading=False)
        view = view[sent:]
    reader = hiredis.Reader()
    reply = reader.gets()
    while reply is False:
        # An SSL socket may hold decrypted bytes the fd does not show: read first,
        # wait only when the read would block.
        data = _retry(partial(sock.recv, 4096), sock, deadline, wait_io, reading=True)
        if not data:
            raise HandshakeFailed("connection closed during AUTH")
        reader.feed(data)
        reply = reader.gets()
    if isinstance(reply, ReplyError):
        raise HandshakeFailed(f"AUTH refused: {reply}")


def _retry(
    op: Callable[[], T],
    sock: socket.socket,
    deadline: float,
    wait_io: WaitIO | None,
    *,
    reading: bool,
) -> T:
    """``op()``, waiting through the loop for whatever it would block on, until ``deadline``."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise HandshakeFailed("TLS/AUTH handshake timed out")
        if wait_io is None:
            sock.settimeout(left)
        try:
            return op()
        except ssl.SSLWantReadError:
            want_read = True
        except ssl.SSLWantWriteError:
            want_read = False
        except BlockingIOError:
            want_read = reading
        if wait_io is None:  # a blocking socket never asks to wait
            raise HandshakeFailed("TLS/AUTH handshake would block")
        wait_io(sock.fileno(), want_read, not want_read, left)
