"""RED metrics: request latency by route, requests in flight, Redis and PostgreSQL call latency.

Labels are bounded: ``route`` is the route template that matched (``unmatched`` for
a 404), ``method`` one of the HTTP methods below (``other`` else), ``status_class``
``2xx``/``3xx``/``4xx``/``5xx``; ``backend`` is ``redis`` or ``postgres``.

PERF: every observation goes to a per-worker ``BatchedHistogram`` (a list increment),
pushed to Prometheus once a second (``service.api.metrics``). Measured in-process (best
of 5 x 50,000 calls, a Falcon app with one route): the middleware adds 0.7-0.9 µs to a
request, the timed transport 0.5 µs to a Redis call, about 1.5% of a worker's ~96 µs of
CPU per increment; ``make bench-quick`` before/after could not tell them apart from the
shared machine's noise.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

import falcon

from service.api.metrics import BatchedHistogram, InFlight
from service.api.pg import Database
from service.api.redis_access import Command, CounterRedis, Node, Part, Transport, _Replid
from service.fastpath.resp import Encoded

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
STATUS_CLASSES = {n: f"{n}xx" for n in range(1, 6)}
REDIS = ("redis",)
POSTGRES = ("postgres",)


class RequestMetrics:
    """Falcon middleware: the duration of every request, and how many are in flight."""

    def __init__(self, durations: BatchedHistogram, in_flight: InFlight) -> None:
        self.durations = durations
        self.in_flight = in_flight
        self.batched = in_flight.hooks is not None  # one loop thread: plain ints suffice

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = perf_counter()
        if self.batched:
            self.in_flight.value += 1
            if not self.in_flight.due:
                self.in_flight.schedule()
        else:
            self.in_flight.gauge.inc()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        elapsed = perf_counter() - req.context.started
        method = req.method if req.method in METHODS else "other"
        status = STATUS_CLASSES.get(resp.status_code // 100, "other")
        self.durations.observe((req.uri_template or "unmatched", method, status), elapsed)
        if self.batched:
            self.in_flight.value -= 1
            if not self.in_flight.due:
                self.in_flight.schedule()
        else:
            self.in_flight.gauge.dec()


class TimedTransport:
    """A Redis ``Transport`` whose every command is timed, waiting in the pipeline included."""

    def __init__(self, inner: Transport, durations: BatchedHistogram) -> None:
        self.inner = inner
        self.durations = durations

    def send(self, slot: int, *command: Part | _Replid, write: bool = False) -> Any:
        started = perf_counter()
        try:
            return self.inner.send(slot, *command, write=write)
        finally:
            self.durations.observe(REDIS, perf_counter() - started)

    def send_encoded(self, slot: int, *command: Part | Encoded | _Replid, write: bool) -> Any:
        started = perf_counter()
        try:
            return self.inner.send_encoded(slot, *command, write=write)
        finally:
            self.durations.observe(REDIS, perf_counter() - started)

    def send_encoded_many(self, commands: list[Command], write: bool) -> list[Any]:
        """Each command is timed from the first one's send to the last reply: they are
        in flight together."""
        started = perf_counter()
        try:
            return self.inner.send_encoded_many(commands, write)
        finally:
            elapsed = perf_counter() - started
            for _ in commands:
                self.durations.observe(REDIS, elapsed)

    def node_of(self, slot: int) -> str:
        return self.inner.node_of(slot)

    def nodes_of(self, slots: list[int]) -> list[Node]:
        return self.inner.nodes_of(slots)

    def ping(self) -> bool:
        return self.inner.ping()

    def stuck(self) -> bool:
        return self.inner.stuck()

    def close(self) -> None:
        self.inner.close()


def timed_redis(access: CounterRedis, durations: BatchedHistogram) -> CounterRedis:
    access.transport = TimedTransport(access.transport, durations)
    return access


class TimedDatabase(Database):
    """The API's PostgreSQL reads, each timed (waiting for a pooled connection included)."""

    def __init__(self, *args: Any, durations: BatchedHistogram, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.durations = durations

    def _fetchone(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        started = perf_counter()
        try:
            return super()._fetchone(sql, params)
        finally:
            self.durations.observe(POSTGRES, perf_counter() - started)
