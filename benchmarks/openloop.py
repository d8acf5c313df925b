"""Open-loop, constant-rate HTTP load, so latency at a fixed offered load is not flattered.

Why our own generator: wrk measures closed loop (a slow response delays the next
request on its connection, so queueing hides: "coordinated omission"); wrk2,
which fixes that, is not packaged for Debian and cannot be fetched here;
Locust's constant-throughput wait times are per user and closed loop too.

Request i is due at ``t0 + i / rate`` whatever happened before. When the
scheduler reaches it, it goes out on an idle keep-alive connection or, if all
are busy, waits in a queue; the server's slowness never delays the schedule.
Two latencies are kept: from the scheduler's dispatch (the headline: it counts
the queue wait for a connection, which is the server's doing, and leaves out
the event loop's ~1 ms timer granularity) and from the intended time (adds the
scheduler's own lateness; the wrk2 convention). A point whose scheduler fell
behind (p99 dispatch lag over 5 ms: starved of CPU or too slow for the rate)
is flagged ``generator_bound`` and not trusted. Python on uvloop costs roughly
50-100 us of CPU per request; that is measured and reported.

Every request due after the warm-up counts in the percentiles, whatever its
status (a fast 503 is a latency too); one that failed or never completed is
*lost* and ranks above all others (``percentiles.py``), so p99 is unknown when
more than 1% are lost rather than computed from the survivors.

``python -m benchmarks.openloop --port P --rate R --duration D`` prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import time
from collections import deque

from benchmarks.percentiles import percentiles

GENERATOR_LAG_LIMIT_S = 0.005
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


class Generator:
    def __init__(self, requests: list[bytes]) -> None:
        self.requests = requests
        # FIFO, not LIFO: reusing the most recently freed connection would pile the load
        # onto the few gunicorn workers that accepted those connections.
        self.idle: deque[Conn] = deque()
        self.backlog: deque[tuple[float, float]] = deque()  # (intended, dispatched)
        self.from_dispatch: list[float] = []  # seconds, every response after warm-up
        self.from_intended: list[float] = []
        self.measured = 0  # requests due after warm-up (dispatched or queued)
        self.ok = 0  # of those answered, 2xx
        self.dispatch_lags: list[float] = []  # scheduler behind its own schedule
        self.queued = 0  # requests that found every connection busy
        self.non2xx = 0
        self.failed = 0
        self.done = 0
        self.measure_from = float("inf")

    def next_request(self) -> bytes:
        return self.requests[random.randrange(len(self.requests))]

    def record(self, intended: float, dispatched: float, status: int) -> None:
        self.done += 1
        if intended < self.measure_from:
            return
        now = time.monotonic()
        self.from_dispatch.append(now - dispatched)
        self.from_intended.append(now - intended)
        if 200 <= status < 300:
            self.ok += 1
        else:
            self.non2xx += 1

    @property
    def lost(self) -> int:
        """Requests due after warm-up that got no response (failed, or still unanswered)."""
        return self.measured - len(self.from_dispatch)


class Conn(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time (no pipelining)."""

    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        self.buf = b""
        self.times = (0.0, 0.0)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.gen.idle.append(self)

    def send(self, times: tuple[float, float]) -> None:
        self.times = times
        assert self.transport is not None
        self.transport.write(self.gen.next_request())

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        m = CONTENT_LENGTH.search(self.buf, 0, end + 2)
        total = end + 4 + (int(m.group(1)) if m else 0)
        if len(self.buf) < total:
            return
        status = int(self.buf[9:12])
        self.buf = self.buf[total:]
        self.gen.record(*self.times, status)
        if self.gen.backlog:
            self.send(self.gen.backlog.popleft())
        else:
            self.gen.idle.append(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.gen.idle:
            self.gen.idle.remove(self)
        elif self.transport is not None:
            self.gen.failed += 1  # a request was in flight on it
            self.gen.done += 1


async def run(args: argparse.Namespace, requests: list[bytes]) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    gen = Generator(requests)
    await asyncio.gather(
        *(
            loop.create_connection(lambda: Conn(gen), args.host, args.port)
            for _ in range(args.connections)
        )
    )
    interval = 1.0 / args.rate
    total = int(args.rate * (args.warmup + args.duration))
    t0 = time.monotonic() + 0.01
    gen.measure_from = t0 + args.warmup
    i = 0
    while i < total:
        now = time.monotonic()
        due = t0 + i * interval
        if due > now:
            # PERF: event-loop timers tick in ms; shorter sleeps would spin a core the
            # server needs. Requests due within the tick go out together.
            await asyncio.sleep(max(due - now, 0.001))
            continue
        while i < total and t0 + i * interval <= now:  # everything due, in order
            intended = t0 + i * interval
            if intended >= gen.measure_from:
                gen.dispatch_lags.append(now - intended)
                gen.measured += 1
            if gen.idle:
                gen.idle.popleft().send((intended, now))
            else:
                gen.backlog.append((intended, now))
                gen.queued += 1
            i += 1
    deadline = time.monotonic() + 10.0
    while gen.done < total and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return summarize(args, gen, total)


def summarize(args: argparse.Namespace, gen: Generator, total: int) -> dict[str, object]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    lag = percentiles(gen.dispatch_lags, scale=1e3)
    return {
        "target_rps": args.rate,
        "completed_rps": round(gen.ok / args.duration, 1),
        "completed_2xx": gen.ok,
        "queued": gen.queued,
        "non2xx": gen.non2xx,
        "failed": gen.failed,
        "unfinished": total - gen.done,
        "lost": gen.lost,  # measured requests without a response: failed or unfinished
        "latency_ms": percentiles(gen.from_dispatch, gen.lost, scale=1e3),
        "latency_from_intended_ms": percentiles(gen.from_intended, gen.lost, scale=1e3),
        "dispatch_lag_ms": lag,
        "generator_cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "generator_bound": (lag["p99"] or 0.0) > GENERATOR_LAG_LIMIT_S * 1e3,
        # More than 1% of requests found every connection busy: the server fell behind
        # the offered rate (its capacity during this point was below the rate asked).
        "saturated": gen.queued > 0.01 * total,
    }


def build_requests(args: argparse.Namespace) -> list[bytes]:
    key = os.environ.get("BENCH_API_KEY", "")
    return [
        f"{args.method} /v1/misc/counter/ns-{i} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
        f"requiems-api-key: {key}\r\nContent-Length: 0\r\n\r\n".encode()
        for i in range(args.namespaces)
    ]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.openloop", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate", type=float, required=True, help="requests per second")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds first")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--namespaces", type=int, default=1000)
    p.add_argument("--method", default="POST")
    args = p.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # plain asyncio works, at about half the rate
        pass
    print(json.dumps(asyncio.run(run(args, build_requests(args)))), flush=True)


if __name__ == "__main__":
    main()
