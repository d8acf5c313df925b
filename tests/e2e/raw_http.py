"""HTTP on a raw socket: the bytes sent exactly as written, the answer parsed by hand."""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass, field
from typing import Any

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    raw: bytes = field(repr=False)

    def json(self) -> Any:
        return json.loads(self.body)

    def is_error_shape(self, code: str) -> bool:
        """The one JSON error shape, with this ``error`` code."""
        doc = self.json()
        return (
            self.headers.get("content-type", "").startswith("application/json")
            and set(doc) == {"error", "message", "metadata"}
            and doc["error"] == code
            and isinstance(doc["message"], str)
            and bool(TIMESTAMP.fullmatch(doc["metadata"]["timestamp"]))
        )


def connect(port: int, timeout: float = 10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_reply(sock: socket.socket, head_only: bool = False) -> Reply:
    """One response: headers, then ``Content-Length`` bytes (none for ``head_only``)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full response: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    length = 0 if head_only else int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return Reply(status, headers, rest[:length], data)


def exchange(port: int, data: bytes, head_only: bool = False) -> Reply:
    """Send ``data`` on a new connection and read one response."""
    with connect(port) as sock:
        sock.sendall(data)
        return read_reply(sock, head_only)


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (EOF or reset), reading what is left."""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
