"""One blocking RESP connection to one Redis node, parsed by hiredis.

PERF: the increment hot path sends one pre-packed command and reads one reply;
redis-py's general client spends ~90 µs of CPU per call on pools, retries,
callbacks and cluster bookkeeping that this path does not need. Measured in one
run (`python -m benchmarks.run --profile quick --apps
service,service-redispy,naive-incr,ceiling`, 2 cores, 4 workers): 9,712 req/s
with this client against 5,927 with redis-py, i.e. 1.19x instead of 0.72x the
naive redis-py INCR app.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import hiredis

if TYPE_CHECKING:
    from service.fastpath.handshake import Handshake

ReplyError = hiredis.ReplyError


def pack(*parts: str | int | bytes) -> bytes:
    """RESP encoding of one command (hiredis, in C)."""
    packed: bytes = hiredis.pack_command(parts)  # type: ignore[arg-type]  # stub: 1-tuple
    return packed


def bulk(part: bytes) -> bytes:
    """One argument as RESP (a bulk string), for ``Encoded``."""
    return b"$%d\r\n%b\r\n" % (len(part), part)


class Encoded(NamedTuple):
    """``n`` arguments of a command already RESP-encoded, one after the other, in
    ``data``: what a batch encodes once per bucket, or builds faster than ``pack``."""

    n: int
    data: bytes


def pack_encoded(*parts: str | int | bytes | Encoded) -> bytes:
    """``pack`` for a command with ``Encoded`` arguments among its parts."""
    count = 0
    chunks = []
    for part in parts:
        if type(part) is Encoded:
            count += part.n
            chunks.append(part.data)
            continue
        raw = part if type(part) is bytes else str(part).encode()
        chunks.append(b"$%d\r\n%b\r\n" % (len(raw), raw))
        count += 1
    return b"*%d\r\n%b" % (count, b"".join(chunks))


def unpack_encoded(encoded: Encoded) -> list[bytes]:
    """The arguments of ``encoded`` one by one (for a client that packs them itself)."""
    reader = hiredis.Reader()
    reader.feed(b"*%d\r\n%b" % (encoded.n, encoded.data))
    args: list[bytes] = reader.gets()
    return args


class ConnectionLost(Exception):
    """The socket failed or timed out: the outcome of the command is unknown."""


# Waits until ``fd`` is readable or ``timeout`` seconds pass (then raises OSError).
# Given one, a connection is non-blocking and yields to other requests while Redis
# answers (see ``service.fastpath.coop``); without one, it blocks the thread.
WaitReadable = Callable[[int, float], None]
# Waits until ``fd`` is readable (read) and/or writable (write), or raises OSError
# after about ``timeout`` seconds: how a connect waits through meinheld's loop.
WaitIO = Callable[[int, bool, bool, float], None]

RESOLVE_TTL = 60.0  # seconds a host name's address is reused (a lookup blocks)
_resolved: dict[tuple[str, int], tuple[float, tuple[int, tuple[Any, ...]]]] = {}


def _sockaddr(addr: tuple[str, int]) -> tuple[int, tuple[Any, ...]]:
    """(family, sockaddr) of ``addr``; a name is looked up once per ``RESOLVE_TTL``.

    Cluster nodes are addressed by IP (``CLUSTER SLOTS``), so only seed names are
    ever looked up, and that lookup is the one call here that may block.
    """
    host, port = addr
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        now = time.monotonic()
        hit = _resolved.get(addr)
        if hit is not None and hit[0] > now:
            return hit[1]
        family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        _resolved[addr] = (now + RESOLVE_TTL, (family, sockaddr))
        return family, sockaddr
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    return family, (host, port)


def open_socket(
    addr: tuple[str, int],
    timeout: float,
    wait_io: WaitIO | None = None,
    handshake: Handshake | None = None,
) -> socket.socket:
    """A connection to a Redis node ready for commands; ConnectionLost if it cannot be made.

    TCP (Nagle off), then ``handshake`` (TLS, AUTH; ``service.fastpath.handshake``),
    all within ``timeout``: every new connection is set up here and only here.
    With ``wait_io`` the connect is non-blocking and waits through the event loop
    (a black-holed node costs the waiting request ``timeout``, not the worker);
    the socket is returned non-blocking. Without, it blocks up to ``timeout``.
    """
    where = f"connect to {addr[0]}:{addr[1]}"
    deadline = time.monotonic() + timeout
    sock = _connect(addr, timeout, wait_io, where)
    if handshake is None:
        return sock
    try:
        return handshake.run(sock, addr[0], deadline, wait_io)
    except (OSError, hiredis.ProtocolError) as exc:
        raise ConnectionLost(f"{where}: {exc}") from None


def _connect(
    addr: tuple[str, int], timeout: float, wait_io: WaitIO | None, where: str
) -> socket.socket:
    if wait_io is None:
        try:
            sock = socket.create_connection(addr, timeout=timeout)
        except OSError as exc:
            raise ConnectionLost(f"{where}: {exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    try:
        family, sockaddr = _sockaddr(addr)
    except OSError as exc:
        raise ConnectionLost(f"{where}: {exc}") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex(sockaddr)
        if err in (errno.EINPROGRESS, errno.EAGAIN):
            wait_io(sock.fileno(), False, True, timeout)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, errno.errorcode.get(err, str(err)))
    except OSError as exc:
        sock.close()
        raise ConnectionLost(f"{where}: {exc}") from None
    return sock


def buffered(sock: socket.socket) -> bool:
    """Whether a TLS socket holds decrypted bytes its fd's readability does not show."""
    return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0


# What a read or write on a non-blocking socket raises when it must wait (TLS adds two).
WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class NodeConnection:
    """Used by one caller at a time: LeanRedis lends it out for one call."""

    __slots__ = ("addr", "timeout", "wait", "wait_io", "handshake", "_sock", "_reader")

    def __init__(
        self,
        addr: tuple[str, int],
        timeout: float,
        wait: WaitReadable | None = None,
        wait_io: WaitIO | None = None,
        handshake: Handshake | None = None,
    ) -> None:
        self.addr = addr
        self.timeout = timeout
        self.wait = wait
        self.wait_io = wait_io
        self.handshake = handshake
        self._sock: socket.socket | None = None
        self._reader = hiredis.Reader()

    def _connect(self) -> socket.socket:
        sock = open_socket(self.addr, self.timeout, self.wait_io, self.handshake)
        if self.wait is not None:
            # One command in flight per connection and commands far below the send
            # buffer: a full buffer is a lost connection (BlockingIOError), never a
            # blocked worker; only recv waits.
            sock.setblocking(False)
        self._sock = sock
        self._reader = hiredis.Reader()
        return sock

    def call(self, packed: bytes, replies: int = 1) -> Any:
        """Send ``packed`` (one or more commands), return the last of ``replies`` replies.

        Error replies are returned as ``ReplyError`` values, not raised: the caller
        decides (MOVED, ASK, NOSCRIPT are routine). A socket failure closes the
        connection and raises ConnectionLost; nothing is ever re-sent here.
        """
        sock = self._sock or self._connect()
        reader = self._reader
        wait = self.wait
        try:
            sock.sendall(packed)
            reply: Any = False
            for _ in range(replies):
                reply = reader.gets()
                while reply is False:
                    if wait is not None and not buffered(sock):
                        # PERF: wait first; a recv now would nearly always find nothing.
                        wait(sock.fileno(), self.timeout)
                    try:
                        data = sock.recv(65536)
                    except WOULD_BLOCK:  # woken without data (or a TLS record part): wait again
                        continue
                    if not data:
                        raise ConnectionLost("connection closed by server")
                    reader.feed(data)
                    reply = reader.gets()
            return reply
        except (OSError, hiredis.ProtocolError) as exc:
            self.close()
            raise ConnectionLost(f"{self.addr[0]}:{self.addr[1]}: {exc!r}") from None
        except ConnectionLost:
            self.close()
            raise

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
