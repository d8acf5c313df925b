"""PipelinedNode against a real Redis, driven by a small greenlet event loop.

The loop gives the pipeline the same hooks meinheld does (``service.fastpath.coop``): park
and wake a greenlet, run a callback before the next poll, wait for a readable
socket. Under meinheld itself the pipeline is tested end to end in
``tests/e2e/test_cooperative_waits.py`` and ``test_pipeline_faults.py``; here many
greenlets and exact orders are cheap, and the flushes can be counted.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from greenlet import getcurrent

from devstack import free_port
from service.fastpath.pipeline import RETRY_AFTER, NotSent, PipelinedNode
from service.fastpath.resp import ConnectionLost, ReplyError, pack
from tests.greenloop import GreenLoop
from tests.helpers import keep_busy


@pytest.fixture
def node(redis_single_url: str) -> Iterator[tuple[tuple[str, int], redis.Redis]]:
    parts = urlsplit(redis_single_url)
    addr = (parts.hostname or "127.0.0.1", parts.port or 6379)
    r = redis.Redis(host=addr[0], port=addr[1])
    yield addr, r
    r.close()


def command(pipe: PipelinedNode, *parts: str | int | bytes) -> Callable[[], Any]:
    """A task for ``GreenLoop.run``: one command through ``pipe`` from its own greenlet."""
    return lambda: pipe.call(pack(*parts), getcurrent())


def test_commands_of_one_turn_go_in_one_send_and_each_reply_reaches_its_owner(
    node: tuple[tuple[str, int], redis.Redis],
) -> None:
    addr, r = node
    r.delete("pipe:a")
    loop = GreenLoop()
    pipe = PipelinedNode(addr, 5, loop.hooks)

    values = loop.run(*[command(pipe, "INCR", "pipe:a")] * 50)
    assert sorted(values) == list(range(1, 51))
    assert loop.flushes == 1  # 50 commands, one send
    pipe.close()


def test_requests_with_many_commands_each_keep_their_order(
    node: tuple[tuple[str, int], redis.Redis],
) -> None:
    """Replies arrive in batches that end mid-way; reading passes from request to request."""
    addr, r = node
    r.delete("pipe:b", "pipe:c")
    loop = GreenLoop()
    pipe = PipelinedNode(addr, 5, loop.hooks)

    def many(key: str) -> Callable[[], list[Any]]:
        return lambda: [pipe.call(pack("INCR", key), getcurrent()) for _ in range(30)]

    runs = loop.run(*[many("pipe:b"), many("pipe:c")] * 10)
    for seq in runs:
        assert seq == sorted(seq) and len(set(seq)) == 30
    assert sorted(v for seq in runs[0::2] for v in seq) == list(range(1, 301))
    assert sorted(v for seq in runs[1::2] for v in seq) == list(range(1, 301))
    assert int(r.get("pipe:b") or 0) == int(r.get("pipe:c") or 0) == 300
    assert 1 < loop.flushes < 600  # batched, yet not all in one send
    pipe.close()


def test_a_command_larger_than_the_socket_buffers_is_sent_whole(
    node: tuple[tuple[str, int], redis.Redis],
) -> None:
    addr, r = node
    big = b"x" * (16 << 20)
    loop = GreenLoop()
    pipe = PipelinedNode(addr, 5, loop.hooks)
    out = loop.run(
        command(pipe, "SET", "pipe:big", big),
        command(pipe, "STRLEN", "pipe:big"),
        command(pipe, "NOSUCHCOMMAND"),
    )
    assert out[0] == b"OK" and out[1] == len(big)
    assert isinstance(out[2], ReplyError)  # error replies are values, in their place
    r.delete("pipe:big")
    pipe.close()


def test_a_timeout_fails_every_command_in_flight_once_and_the_next_call_reconnects(
    node: tuple[tuple[str, int], redis.Redis],
) -> None:
    addr, r = node
    r.delete("pipe:t")
    loop = GreenLoop()
    pipe = PipelinedNode(addr, 0.3, loop.hooks)
    # The node answers nobody for 3 s: room for a loaded machine to send the five
    # increments and see them time out (0.3 s) before it is free again.
    busy = keep_busy(r, 3000)
    out = loop.run(*[command(pipe, "INCR", "pipe:t")] * 5)
    busy.join(10)
    assert all(isinstance(x, ConnectionLost) and not isinstance(x, NotSent) for x in out)
    # The node runs the five buffered increments once free (in whichever order it reads
    # its clients after the script: wait for them); none was sent twice.
    deadline = time.monotonic() + 5
    while int(r.get("pipe:t") or 0) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert int(r.get("pipe:t") or 0) == 5
    assert loop.run(command(pipe, "INCR", "pipe:t")) == [6]
    pipe.close()


def test_a_node_that_cannot_be_reached_fails_fast_unsent_then_is_tried_again(
    node: tuple[tuple[str, int], redis.Redis],
) -> None:
    _, r = node
    dead = ("127.0.0.1", free_port())  # nothing listens: connects are refused
    loop = GreenLoop()
    pipe = PipelinedNode(dead, 0.5, loop.hooks)
    first = loop.run(*[command(pipe, "PING")] * 3)
    assert all(isinstance(x, NotSent) for x in first)  # queued behind one connect, none sent
    (fast,) = loop.run(command(pipe, "PING"))
    # Failed at once, without a connect: only that path says "unreachable" (its message
    # shows it; a time bound would only add a way to fail on a loaded machine).
    assert isinstance(fast, NotSent) and "unreachable" in str(fast)
    time.sleep(RETRY_AFTER)  # the window has closed: it ends RETRY_AFTER after the failure
    (again,) = loop.run(command(pipe, "PING"))
    assert isinstance(again, NotSent) and "unreachable" not in str(again)  # tried again
    pipe.close()


def test_requests_with_commands_on_two_nodes_at_once_each_get_every_reply(
    node: tuple[tuple[str, int], redis.Redis],
) -> None:
    """A batch's way: submit to every node, then wait for each in turn. Two connections
    stand for two nodes (the reader role is per connection). Half the requests wait on
    one first, half on the other. x's replies are large, so they come in over many
    reads and its reader role passes while other owners are parked on y or read it:
    the role must pass only to an owner parked on x, or nobody reads x again."""
    addr, r = node
    big = b"v" * (256 << 10)
    r.set("pipe:big", big)
    r.delete("pipe:y")
    loop = GreenLoop()
    x, y = PipelinedNode(addr, 5, loop.hooks), PipelinedNode(addr, 5, loop.hooks)

    def both(i: int) -> Callable[[], list[Any]]:
        def task() -> list[Any]:
            out = []
            for _ in range(5):
                px = x.submit(pack("GET", "pipe:big"), getcurrent())
                py = y.submit(pack("INCR", "pipe:y"), getcurrent())
                if i % 2:
                    out += [x.wait(px), y.wait(py)]
                else:
                    got_y = y.wait(py)
                    out += [x.wait(px), got_y]
            return out

        return task

    started = time.monotonic()
    runs = loop.run(*[both(i) for i in range(30)])
    assert time.monotonic() - started < 5  # no reader role lost (the watchdog's 7 s)
    assert all(isinstance(run, list) and len(run) == 10 for run in runs), runs
    assert all(v == big for run in runs for v in run[0::2])
    assert sorted(v for run in runs for v in run[1::2]) == list(range(1, 151))
    assert int(r.get("pipe:y") or 0) == 150
    r.delete("pipe:big")
    x.close()
    y.close()


def test_a_silent_node_fails_its_own_commands_in_place_and_the_other_node_answers(
    node: tuple[tuple[str, int], redis.Redis],
) -> None:
    """One node accepts connections and never answers: every request still ends, with
    the live node's reply and a ConnectionLost for the silent one, whichever it waits
    on first (a failure stored for an owner busy elsewhere, a parked one woken)."""
    addr, r = node
    r.delete("pipe:live")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # connects complete in the kernel; nothing is ever read or sent
    loop = GreenLoop()
    live = PipelinedNode(addr, 5, loop.hooks)
    dead = PipelinedNode(silent.getsockname(), 0.3, loop.hooks)

    def both(i: int) -> Callable[[], tuple[Any, Any]]:
        def task() -> tuple[Any, Any]:
            p_live = live.submit(pack("INCR", "pipe:live"), getcurrent())
            p_dead = dead.submit(pack("PING"), getcurrent())
            results: dict[str, Any] = {}
            for name, pipe, p in (("live", live, p_live), ("dead", dead, p_dead))[
                :: 1 - 2 * (i % 2)
            ]:
                try:
                    results[name] = pipe.wait(p)
                except ConnectionLost as exc:
                    results[name] = exc
            return results["live"], results["dead"]

        return task

    started = time.monotonic()
    runs = loop.run(*[both(i) for i in range(20)])
    assert time.monotonic() - started < 5  # the silent node's timeout, not forever
    assert sorted(run[0] for run in runs) == list(range(1, 21))
    assert all(isinstance(run[1], ConnectionLost) for run in runs), runs
    live.close()
    dead.close()
    silent.close()


def test_replies_wait_for_an_owner_busy_on_a_slow_node_past_this_nodes_timeout(
    node: tuple[tuple[str, int], redis.Redis],
) -> None:
    """A request waits on a silent node (6 s) before the live one (0.3 s timeout): the
    live node's watchdog must not fail its command meanwhile, since nobody is parked
    there and its reply is in the socket. It reads as a value, not an unknown outcome."""
    addr, r = node
    r.delete("pipe:later")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    loop = GreenLoop()
    live = PipelinedNode(addr, 0.3, loop.hooks)
    slow = PipelinedNode(silent.getsockname(), 6, loop.hooks)

    def task() -> tuple[Any, Any]:
        p_live = live.submit(pack("INCR", "pipe:later"), getcurrent())
        p_slow = slow.submit(pack("PING"), getcurrent())
        try:
            slow.wait(p_slow)
        except ConnectionLost as exc:
            lost = exc
        return live.wait(p_live), lost

    ((value, lost),) = loop.run(task)
    assert value == 1 and isinstance(lost, ConnectionLost)
    assert int(r.get("pipe:later") or 0) == 1
    live.close()
    slow.close()
    silent.close()
