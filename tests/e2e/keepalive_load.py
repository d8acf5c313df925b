"""Keep-alive HTTP load with exact accounting, for the lifecycle tests.

wrk abandons the requests it has in flight when its time is up, so its count of
responses cannot be compared with a counter's final value. These clients (one
asyncio loop in a thread of its own) finish the request they have sent before they
stop, so every increment the service applied is either acknowledged with a 200 or
shows up as an error: ``final value == start + ok`` holds exactly when nothing was lost.

A client whose response says ``Connection: close`` reconnects, as wrk does. A connect
refused (nothing listens any more) is counted apart from errors: it is what a client
of a stopped service sees, and it never carries a request.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

READ_TIMEOUT = 15.0  # longer than any drain; a request never answered is an error


@dataclass
class Tally:
    ok: int = 0
    statuses: Counter[int] = field(default_factory=Counter)  # every status but 200
    errors: list[str] = field(default_factory=list)  # a request sent and not answered, ...
    refused: int = 0  # connects refused (ECONNREFUSED)
    connects: int = 0
    closes: int = 0  # responses with Connection: close


def _request(path: str, key: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nrequiems-api-key: {key}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bool]:
    """One request; its status and whether the server closes the connection after it."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:] if line)
    }
    await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers.get("connection", "").lower() == "close"


async def _client(
    host: str, port: int, request: bytes, until: float, stop_on_refusal: bool, tally: Tally
) -> None:
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except ConnectionRefusedError:
            tally.refused += 1
            if stop_on_refusal:
                return
            await asyncio.sleep(0.01)
            continue
        except OSError as exc:
            tally.errors.append(f"connect: {exc!r}")
            continue
        tally.connects += 1
        try:
            while time.monotonic() < until:
                status, closing = await asyncio.wait_for(
                    _exchange(reader, writer, request), READ_TIMEOUT
                )
                if status == 200:
                    tally.ok += 1
                else:
                    tally.statuses[status] += 1
                if closing:
                    tally.closes += 1
                    break
        except (OSError, asyncio.IncompleteReadError) as exc:  # TimeoutError is an OSError
            tally.errors.append(f"request: {exc!r}")
        finally:
            writer.close()


class KeepAliveLoad:
    """``connections`` clients POSTing ``path`` for ``seconds``, in a background thread."""

    def __init__(
        self,
        port: int,
        path: str,
        key: str,
        *,
        connections: int = 32,
        seconds: float = 5.0,
        stop_on_refusal: bool = False,
    ) -> None:
        self.tally = Tally()
        request = _request(path, key)

        async def main() -> None:
            until = time.monotonic() + seconds
            await asyncio.gather(
                *(
                    _client("127.0.0.1", port, request, until, stop_on_refusal, self.tally)
                    for _ in range(connections)
                )
            )

        self.thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        self.thread.start()

    def result(self) -> Tally:
        self.thread.join(60)
        assert not self.thread.is_alive(), "the load did not end"
        return self.tally
