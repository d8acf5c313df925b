"""A small greenlet event loop with the hooks meinheld gives (``service.fastpath.coop``).

Code written against ``LoopHooks`` (the Redis pipeline, the PostgreSQL gate) runs
on it in-process: many greenlets, exact orders and counted flushes are cheap here.
Under meinheld itself that code is tested end to end in ``tests/e2e/``.
"""

from __future__ import annotations

import select
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from greenlet import getcurrent, greenlet

from service.fastpath.coop import LoopHooks
from service.fastpath.resp import ConnectionLost


class GreenLoop:
    """Run greenlets to completion; ``hooks`` are the LoopHooks the code under test uses."""

    def __init__(self) -> None:
        self.hub = getcurrent()
        self.soon: deque[Callable[[], None]] = deque()
        self.waiting: dict[int, tuple[greenlet, float]] = {}  # fd -> (waiter, deadline)
        self.writing: set[int] = set()  # fds of ``waiting`` waited on for writability
        self.timers: list[tuple[float, Callable[[], None]]] = []
        self.flushes = 0  # calls of call_soon

    def call_soon(self, fn: Callable[[], None]) -> None:
        self.flushes += 1
        self.soon.append(fn)

    def wait_readable(self, fd: int, timeout: float) -> None:
        self.waiting[fd] = (getcurrent(), time.monotonic() + timeout)
        self.hub.switch()

    def current(self) -> Any:
        g = getcurrent()
        return None if g is self.hub else g

    def wake(self, g: greenlet) -> None:
        self.soon.append(g.switch)

    @property
    def hooks(self) -> LoopHooks:
        return LoopHooks(
            wait_readable=self.wait_readable,
            current=self.current,
            park=self.hub.switch,
            wake=self.wake,
            call_soon=self.call_soon,
            wait_io=self.wait_io,
            call_later=self.call_later,
            spawn=self.spawn,
            loop_thread=threading.get_ident(),
        )

    def wait_io(self, fd: int, read: bool, write: bool, timeout: float) -> None:
        if write:
            self.writing.add(fd)
        self.waiting[fd] = (getcurrent(), time.monotonic() + timeout)
        self.hub.switch()

    def spawn(self, fn: Callable[[], None]) -> None:
        self.soon.append(lambda: greenlet(fn, parent=self.hub).switch())

    def call_later(self, seconds: float, fn: Callable[[], None]) -> None:
        self.timers.append((time.monotonic() + seconds, fn))

    def sleep(self, seconds: float) -> None:
        """Park the running greenlet for ``seconds``."""
        me = getcurrent()
        self.call_later(seconds, me.switch)
        self.hub.switch()

    def run(self, *tasks: Callable[[], Any]) -> list[Any]:
        results: list[Any] = [None] * len(tasks)
        finished = [0]

        def task(i: int) -> None:
            try:
                results[i] = tasks[i]()
            except ConnectionLost as exc:
                results[i] = exc
            finished[0] += 1

        def start(i: int) -> Callable[[], None]:
            return lambda: greenlet(task, parent=self.hub).switch(i)

        for i in range(len(tasks)):
            self.soon.append(start(i))
        while self.soon or self.waiting or self.timers:
            while self.soon:
                self.soon.popleft()()
            if finished[0] == len(tasks) or (not self.waiting and not self.timers):
                break  # the tasks are done: timers left (a watchdog) are not waited for
            deadline = min([d for _, d in self.waiting.values()] + [t for t, _ in self.timers])
            reading = [fd for fd in self.waiting if fd not in self.writing]
            ready_r, ready_w, _ = select.select(
                reading, list(self.writing), [], max(0, deadline - time.monotonic())
            )
            ready = set(ready_r) | set(ready_w)
            now = time.monotonic()
            due = [fn for t, fn in self.timers if t <= now]
            self.timers = [(t, fn) for t, fn in self.timers if t > now]
            for fn in due:
                fn()
            for fd in list(self.waiting):
                g, d = self.waiting[fd]
                if fd in ready:
                    del self.waiting[fd]
                    self.writing.discard(fd)
                    g.switch()
                elif d <= now:
                    del self.waiting[fd]
                    self.writing.discard(fd)
                    g.throw(TimeoutError("timed out"))
        return results
