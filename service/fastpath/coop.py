"""Cooperative Redis waits under the meinheld worker.

meinheld runs every request in a greenlet on one event loop. A blocking ``recv``
on Redis parks the whole worker process: a context switch out and back in per
request, with caches gone cold in between. Waiting through meinheld's loop
(``trampoline``) instead lets the worker read, run and answer other requests
while Redis works, and several commands reach Redis per wake-up.

PERF: measured with wrk (-t2 -c64, POSTs over 1,000 namespaces, 2 cores, same
build, cooperative waits switched on and off between runs): 8,922 -> 12,798
req/s at 2 workers, 10,760 -> 12,242 at 4; worker CPU per request 118 -> 96 µs,
voluntary context switches per request 0.66 -> 0.22. Waiting before the first
``recv`` (instead of a ``recv`` that finds nothing) added ~10% more. In the
full benchmark (``make bench``, best worker counts): 10,193 -> 12,245 req/s.

The same hooks let the requests in flight to one node share one pipelined
connection (``pipeline``). ``meinheld_hooks`` builds them; the composition root
(``service.wsgi``) passes them to whatever waits in the loop.

It needs meinheld built against the greenlet it runs with: the PyPI source
reads greenlet's internals through a bundled 2013 header and crashes on
greenlet 3 here; ``deploy/build_meinheld.py`` builds it right and adds the
park/wake calls the pipeline uses.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from service.fastpath.resp import WaitIO, WaitReadable


@dataclass(frozen=True)
class LoopHooks:
    """What meinheld's loop offers the code that waits in it: Redis, PostgreSQL, metrics.

    Every wait has a deadline: a request parked in the loop always wakes.
    """

    wait_readable: WaitReadable  # wait for a readable fd, or raise OSError on timeout
    current: Callable[[], Any]  # a handle on the running request
    park: Callable[[], Any]  # suspend it until woken
    wake: Callable[[Any], None]  # resume a parked one on the next loop turn
    call_soon: Callable[[Callable[[], None]], None]  # run in the loop before the next poll
    wait_io: WaitIO  # wait for fd readable/writable, or raise OSError after ~timeout
    call_later: Callable[[float, Callable[[], None]], None]  # run in the loop after ~seconds
    spawn: Callable[[Callable[[], None]], None]  # run in a greenlet of its own, in the loop
    loop_thread: int = 0  # the thread running the loop

    def sleep(self, seconds: float) -> None:
        """Park the running request for about ``seconds`` (timers tick once a second)."""
        owner = self.current()
        self.call_later(seconds, lambda: self.wake(owner))
        self.park()

    def in_request(self) -> bool:
        """Running in a request's greenlet of the loop, where waits may yield."""
        return threading.get_ident() == self.loop_thread and self.current() is not None


log = logging.getLogger("counter.coop")
SAFE_BUILD = "1.0.2+greenlet3.park.live.perf.edges.drain"  # what deploy/build_meinheld.py installs


def meinheld_hooks() -> LoopHooks | None:
    """The hooks of this meinheld worker's loop; None (logged) if the build is unsafe.

    Call it in the worker's main thread, which runs the loop.
    """
    try:
        build = version("meinheld")
    except PackageNotFoundError:
        build = "none"
    if build != SAFE_BUILD:
        log.warning(
            "meinheld %s is not the build from deploy/build_meinheld.py: "
            "Redis waits block the worker (slower, still correct)",
            build,
        )
        return None
    from meinheld import server

    trampoline = server.trampoline

    def wait_readable(fd: int, timeout: float) -> None:
        # meinheld's timer ticks once a second, so a wait of n seconds ends between n-1
        # and n+1 s: asking for ceil(timeout)+1 never gives up before ``timeout``. It
        # raises meinheld.server.timeout, an OSError: the connection reports it lost.
        trampoline(fd, read=True, timeout=math.ceil(timeout) + 1)

    def call_soon(fn: Callable[[], None]) -> None:
        server.schedule_call(0, fn)

    def wait_io(fd: int, read: bool, write: bool, timeout: float) -> None:
        trampoline(fd, read=read, write=write, timeout=math.ceil(timeout) + 1)

    def spawn(fn: Callable[[], None]) -> None:
        server.spawn(fn)

    def call_later(seconds: float, fn: Callable[[], None]) -> None:
        server.schedule_call(max(1, math.ceil(seconds)), fn)  # meinheld's timers tick per second

    return LoopHooks(
        wait_readable=wait_readable,
        current=server._current_client,
        park=server._park,
        wake=server._wake,
        call_soon=call_soon,
        wait_io=wait_io,
        call_later=call_later,
        spawn=spawn,
        loop_thread=threading.get_ident(),
    )
