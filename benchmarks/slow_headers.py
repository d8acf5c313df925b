"""Slowloris: connections that send half a header, and how long the service holds them.

Opens ``--connections`` (3,000) connections to the service (2 meinheld workers,
default ``COUNTER_HEADER_TIMEOUT``), each sending a request line and half a
header, then counts how many are still open at a few marks and how many were
answered with the JSON 408. Before the read deadlines of ``deploy/build_meinheld.py``
all 3,000 were still open 20 s later.

Usage: ``python -m benchmarks.slow_headers [--connections 3000]`` (~30 s).
"""

from __future__ import annotations

import argparse
import select
import socket
import tempfile
import time
from pathlib import Path

from benchmarks.servers import APPS, Server
from devstack import PostgresServer, RedisSingle
from service.migrate import migrate
from service.settings import Settings

SERVICE = next(spec for spec in APPS if spec.name == "service")
MARKS = (5, 12, 20)  # seconds after the connections were opened


def run(n: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="slow-headers-"))
    pg, redis = PostgresServer(), RedisSingle(work / "redis")
    try:
        dsn, url = pg.start(), redis.start()
        migrate(Settings(pg_dsn=dsn, redis_url=url))
        env = {
            "COUNTER_PG_DSN": dsn,
            "COUNTER_REDIS_URL": url,
            "COUNTER_WORKER_CONNECTIONS": str(n + 1000),
        }
        with Server(SERVICE, 2, env, work) as server:
            socks = []
            start = time.monotonic()
            for _ in range(n):
                sock = socket.create_connection(("127.0.0.1", server.port))
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Half: ")
                socks.append(sock)
            poller = select.poll()
            by_fd = {s.fileno(): s for s in socks}
            for fd in by_fd:
                poller.register(fd, select.POLLIN)
            open_fds, answered = set(by_fd), 0
            for mark in MARKS:
                while time.monotonic() - start < mark:
                    for fd, _ in poller.poll(200):
                        try:
                            data = by_fd[fd].recv(65536)
                        except ConnectionResetError:
                            data = b""
                        answered += data.startswith(b"HTTP/1.1 408")
                        open_fds.discard(fd)  # a 408 is followed by the close
                        poller.unregister(fd)
                print(f"at {mark:2d} s: {len(open_fds)} of {n} open, {answered} answered 408")
            for sock in socks:
                sock.close()
    finally:
        redis.stop()
        pg.stop()
        pg.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="connections that send half a header")
    parser.add_argument("--connections", type=int, default=3000)
    run(parser.parse_args(argv).connections)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
