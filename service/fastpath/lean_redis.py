"""LeanRedis: slot routing and scripts over ``resp.NodeConnection``, for the hot path.

Works on one node or a Redis Cluster. It keeps the cluster's slot map (from
``CLUSTER SLOTS``), follows MOVED and ASK (the node refused, so re-sending is
safe), and never re-sends after
a lost connection or a timeout, whose outcome is unknown.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from service.fastpath.coop import LoopHooks
from service.fastpath.pipeline import PipelinedNode
from service.fastpath.resp import ConnectionLost, NodeConnection, ReplyError, WaitReadable, pack

Addr = tuple[str, int]
N_SLOTS = 16384
MAX_REDIRECTS = 10
MAX_IDLE = 64  # idle connections kept per node; more are closed after their call
TRYAGAIN_PAUSE = 0.05  # seconds
ASKING = pack("ASKING")


class CommandRefused(Exception):
    """Redis answered with an error (CLUSTERDOWN, TRYAGAIN, OOM, ...): the command did not run."""


class LeanRedis:
    """Safe for threads and greenlets: each call borrows a connection from a pool per node.

    With ``wait`` (under meinheld, see ``service.coop``) the connections are
    non-blocking and a request waiting for Redis lets the worker serve others.
    With ``hooks`` too, a request's single-reply commands go instead over one
    pipelined connection per node (``service.pipeline``), shared by every request
    in flight; ASKING pairs and calls outside a request still use the pool.
    """

    def __init__(
        self,
        seeds: Sequence[Addr],
        *,
        cluster: bool,
        timeout: float,
        wait: WaitReadable | None = None,
        hooks: LoopHooks | None = None,
    ) -> None:
        self.seeds = list(seeds)
        self.cluster = cluster
        self.timeout = timeout
        self.wait = wait
        self.hooks = hooks
        self._idle: dict[Addr, list[NodeConnection]] = {}
        self._pipes: dict[Addr, PipelinedNode] = {}
        self._slots: list[Addr | None] | None = None

    def _call(self, addr: Addr, packed: bytes, replies: int = 1) -> Any:
        """One call on a connection lent from ``addr``'s pool, returned after a reply.

        A connection that failed is closed by ``NodeConnection`` and not returned, and
        the node's idle ones are dropped too: after a node restart they are all dead,
        and each would otherwise fail one more request.
        """
        hooks = self.hooks
        if hooks is not None and replies == 1:
            owner = hooks.current()
            if owner is not None:  # in a request: share the node's pipelined connection
                pipe = self._pipes.get(addr)
                if pipe is None:
                    pipe = self._pipes[addr] = PipelinedNode(addr, self.timeout, hooks)
                return pipe.call(packed, owner)
        idle = self._idle.get(addr)
        if idle is None:
            idle = self._idle.setdefault(addr, [])
        try:
            conn = idle.pop()  # list.pop and append are atomic: no lock for threads
        except IndexError:
            conn = NodeConnection(addr, self.timeout, self.wait)
        try:
            reply = conn.call(packed, replies)
        except ConnectionLost:
            while idle:
                idle.pop().close()
            raise
        if len(idle) < MAX_IDLE:
            idle.append(conn)
        else:
            conn.close()
        return reply

    def masters(self) -> list[Addr]:
        if not self.cluster:
            return self.seeds[:1]
        slots = self._slots or self.refresh_slots()
        return sorted({a for a in slots if a is not None})

    def refresh_slots(self) -> list[Addr | None]:
        """Ask any known node for the slot map; raises ConnectionLost if none answers."""
        candidates = list(dict.fromkeys([*(self._slots or []), *self.seeds]))
        for addr in candidates:
            if addr is None:
                continue
            try:
                reply = self._call(addr, pack("CLUSTER", "SLOTS"))
            except ConnectionLost:
                continue
            if isinstance(reply, ReplyError):
                continue
            table: list[Addr | None] = [None] * N_SLOTS
            for start, end, master, *_ in reply:
                host = master[0].decode() or addr[0]
                table[start : end + 1] = [(host, int(master[1]))] * (end - start + 1)
            self._slots = table
            return table
        raise ConnectionLost("no Redis Cluster node answered CLUSTER SLOTS")

    def _node_for(self, slot: int) -> Addr:
        if not self.cluster:
            return self.seeds[0]
        addr = (self._slots or self.refresh_slots())[slot]
        if addr is None:
            raise CommandRefused(f"slot {slot} is not served by any node")
        return addr

    def execute(self, slot: int, packed: bytes) -> Any:
        """Run one packed command on the master of ``slot``; return its reply."""
        addr = self._node_for(slot)
        asking = False
        tries = 0
        while tries < MAX_REDIRECTS:
            tries += 1
            try:
                reply = self._call(addr, ASKING + packed, 2) if asking else self._call(addr, packed)
            except ConnectionLost:
                # The node may be gone for good (a replica promoted elsewhere): ask the
                # cluster for the map again on the next call. This call is not re-sent.
                if self.cluster:
                    self._slots = None
                raise
            if not isinstance(reply, ReplyError):
                return reply
            message = str(reply)
            kind, _, rest = message.partition(" ")
            if kind in ("MOVED", "ASK"):
                target = rest.split(" ")[1]
                host, _, port = target.rpartition(":")
                addr = (host or addr[0], int(port))
                asking = kind == "ASK"
                if kind == "MOVED":
                    self._slots = None  # the map changed: reload it on the next call
                continue
            if kind == "TRYAGAIN" and tries < MAX_REDIRECTS:
                # A multi-key script hit a slot being migrated; it did not run. The
                # migration of one slot takes milliseconds: wait, then ask again.
                time.sleep(TRYAGAIN_PAUSE)
                continue
            raise CommandRefused(message)
        raise CommandRefused(f"too many redirections for slot {slot}")

    def ping_all(self) -> bool:
        try:
            return all(self._call(a, pack("PING")) == b"PONG" for a in self.masters())
        except (ConnectionLost, CommandRefused):
            return False

    def close(self) -> None:
        """Close the idle connections (those lent out are closed when they fail)."""
        for pipe in self._pipes.values():
            pipe.close()
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
