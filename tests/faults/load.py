"""Continuous load: client threads incrementing counters over HTTP, recording every outcome.

Each client keeps one keep-alive connection (a new one after any error), sends
POSTs at a bounded rate, round-robin over all counters from its own offset, so
every counter gets increments from every client, and records an `Op` per POST.
A client never retries: a retried POST whose first outcome is unknown is
exactly what the checker must be able to see. Load is bounded by time (the
scenario stops it) and by `max_requests` per client.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from tests.faults.history import Op, Outcome, classify

PATH = "/v1/misc/counter/"


class Client(threading.Thread):
    def __init__(self, load: Load, index: int) -> None:
        super().__init__(name=f"load-{index}", daemon=True)
        self.load = load
        self.index = index
        self.ops: list[Op] = []  # appended by this thread only
        self.idle = threading.Event()
        self._conn: http.client.HTTPConnection | None = None

    def run(self) -> None:
        load = self.load
        names = load.counters
        k = self.index * max(1, len(names) // load.clients)
        period = 1.0 / load.rate
        next_at = time.monotonic()
        while not load.stopped.is_set() and len(self.ops) < load.max_requests:
            if not load.running.is_set():
                self._close()
                self.idle.set()
                load.running.wait(0.1)
                next_at = time.monotonic()
                continue
            self.idle.clear()
            name = names[k % len(names)]
            k += 1
            self.ops.append(self._post(name))
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()  # behind (a slow answer): do not burst to catch up
        self._close()
        self.idle.set()

    def _post(self, name: str) -> Op:
        load = self.load
        start = time.monotonic()
        try:
            if self._conn is None:
                self._conn = http.client.HTTPConnection(load.host, load.port, timeout=load.timeout)
                try:
                    self._conn.connect()
                except ConnectionRefusedError:
                    self._close()
                    return Op(name, Outcome.FAIL, start, time.monotonic(), error="refused")
            self._conn.request("POST", PATH + name, headers=load.headers)
            resp = self._conn.getresponse()
            body = resp.read()
            outcome, error, value = classify(resp.status, body)
            if resp.will_close:
                self._close()
        except TimeoutError:
            self._close()
            return Op(name, Outcome.UNKNOWN, start, time.monotonic(), error="timeout")
        except (OSError, http.client.HTTPException):
            self._close()
            return Op(name, Outcome.UNKNOWN, start, time.monotonic(), error="connection lost")
        if outcome is not Outcome.OK:
            self._close()  # a fresh connection after an error, as a careful client would
        return Op(name, outcome, start, time.monotonic(), value=value, error=error)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Load:
    """`clients` threads, `rate` POSTs per second each, over `counters`; start, stop."""

    def __init__(
        self,
        url: str,
        api_key: str,
        counters: Sequence[str],
        *,
        clients: int = 4,
        rate: float = 50.0,
        timeout: float = 6.0,
        max_requests: int = 20_000,
    ) -> None:
        split = urlsplit(url)
        self.host, self.port = split.hostname or "127.0.0.1", split.port or 80
        self.headers = {"requiems-api-key": api_key, "Content-Length": "0"}
        self.counters = list(counters)
        self.clients = clients
        self.rate = rate
        self.timeout = timeout
        self.max_requests = max_requests
        self.running = threading.Event()
        self.stopped = threading.Event()
        self.events: list[tuple[str, float]] = []
        self._threads = [Client(self, i) for i in range(clients)]

    def start(self) -> None:
        self.running.set()
        for t in self._threads:
            t.start()

    def mark(self, label: str) -> float:
        """Note an event on the history's clock; returns its time."""
        now = time.monotonic()
        self.events.append((label, now))
        return now

    def run_for(self, seconds: float) -> None:
        time.sleep(seconds)

    def pause(self, timeout: float = 30.0) -> None:
        """Stop sending and wait until no request is in flight."""
        self.running.clear()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.idle.wait(max(0.0, deadline - time.monotonic()))

    def resume(self) -> None:
        self.running.set()

    def stop(self, timeout: float = 30.0) -> list[Op]:
        """Stop every client (in-flight requests finish or time out); the whole history."""
        self.stopped.set()
        self.running.set()
        for t in self._threads:
            t.join(timeout)
        return self.ops()

    def ops(self) -> list[Op]:
        return sorted((op for t in self._threads for op in t.ops), key=lambda op: op.start)
