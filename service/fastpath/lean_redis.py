"""LeanRedis: slot routing and scripts over ``resp.NodeConnection``, for the hot path.

Works on one node or a Redis Cluster. It keeps the cluster's slot map (from
``CLUSTER SLOTS``), follows MOVED and ASK (the node refused, so re-sending is
safe), and never re-sends after
a lost connection or a timeout, whose outcome is unknown.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from service.fastpath.coop import LoopHooks
from service.fastpath.handshake import Handshake
from service.fastpath.pipeline import NotReplicated, PipelinedNode
from service.fastpath.resp import ConnectionLost, NodeConnection, ReplyError, WaitReadable, pack

Addr = tuple[str, int]
N_SLOTS = 16384
MAX_REDIRECTS = 10
MAX_IDLE = 64  # idle connections kept per node; more are closed after their call
TRYAGAIN_PAUSE = 0.05  # seconds
ASKING = pack("ASKING")
REPLID = re.compile(rb"master_replid:([0-9a-f]+)")
PerNode = Callable[[str], bytes]  # a command built for one node, from its replication id
_UNSENT: Any = object()  # ``execute``'s ``first`` when no attempt was made yet


class CommandRefused(Exception):
    """Redis answered with an error (CLUSTERDOWN, TRYAGAIN, OOM, ...): the command did not run."""


class LeanRedis:
    """Safe for threads and greenlets: each call borrows a connection from a pool per node.

    With ``wait`` (under meinheld, see ``service.fastpath.coop``) the connections are
    non-blocking and a request waiting for Redis lets the worker serve others.
    With ``hooks`` too, a request's single-reply commands go instead over one
    pipelined connection per node (``service.fastpath.pipeline``), shared by every request
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
        replica_ack: float | None = None,
        handshake: Handshake | None = None,
    ) -> None:
        self.seeds = list(seeds)
        self.replica_ack = replica_ack  # seconds to wait for one replica (WAIT 1), or None
        self.handshake = handshake  # TLS and AUTH on every new connection, pooled or pipelined
        self.cluster = cluster
        self.timeout = timeout
        self.wait = wait
        self.hooks = hooks
        self._idle: dict[Addr, list[NodeConnection]] = {}
        self._pipes: dict[Addr, PipelinedNode] = {}
        self._slots: list[Addr | None] | None = None
        self._stale = False  # reload the slot map on the next call
        self._refreshing = False  # a request is reloading it
        self._failed_at: dict[Addr, float] = {}  # when a call to a node last failed
        self._replids: dict[Addr, str] = {}  # see ``replid``

    def _call(self, addr: Addr, packed: bytes, replies: int = 1, write: bool = False) -> Any:
        """One call on a connection lent from ``addr``'s pool, returned after a reply.

        A connection that failed is closed by ``NodeConnection`` and not returned, and
        the node's idle ones are dropped too: after a node restart they are all dead,
        and each would otherwise fail one more request.
        """
        hooks = self.hooks
        if hooks is not None and replies == 1:
            owner = hooks.current()
            if owner is not None:  # in a request: share the node's pipelined connection
                pipe = self._pipes.get(addr) or self._pipe(addr)
                return pipe.call(packed, owner, write)
        idle = self._idle.get(addr)
        if idle is None:
            idle = self._idle.setdefault(addr, [])
        try:
            conn = idle.pop()  # list.pop and append are atomic: no lock for threads
        except IndexError:
            conn = NodeConnection(
                addr,
                self.timeout,
                self.wait,
                hooks.wait_io if hooks is not None else None,
                handshake=self.handshake,
            )
        try:
            reply = conn.call(packed, replies)
            if write and self.replica_ack is not None:  # the same connection: WAIT covers it
                acked = conn.call(pack("WAIT", 1, max(1, int(self.replica_ack * 1000))))
                if not (isinstance(acked, int) and acked >= 1):
                    raise NotReplicated(f"{addr[0]}:{addr[1]}: no replica acknowledged in time")
        except NotReplicated:
            if len(idle) < MAX_IDLE:
                idle.append(conn)
            raise
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
        return sorted({a for a in self._slot_map() if a is not None})

    def refresh_slots(self) -> list[Addr | None]:
        """Ask any known node for the slot map; raises ConnectionLost if none answers.

        Nodes that failed lately are asked last: a black-holed node would make the
        request asking wait out a timeout, and other nodes know the map as well.
        """
        known = dict.fromkeys([*(self._slots or []), *self.seeds])
        failed = self._failed_at
        candidates = sorted((a for a in known if a is not None), key=lambda a: failed.get(a, 0))
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

    def _slot_map(self) -> list[Addr | None]:
        """The slot map, refreshed when stale by one request at a time (the others use
        the old map meanwhile, or wait for the first map)."""
        slots = self._slots
        if slots is not None and (not self._stale or self._refreshing):
            return slots
        self._refreshing = True
        try:
            slots = self.refresh_slots()
            self._stale = False
            self._replids.clear()  # roles may have changed with the map: ask again
        except ConnectionLost:
            if self._slots is None:
                raise
            slots = self._slots  # nobody answered: keep routing by the old map
        finally:
            self._refreshing = False
        return slots

    def node_for(self, slot: int) -> Addr:
        """The master serving ``slot`` by the current map (grouping commands per node)."""
        return self._node_for(slot)

    def nodes_for(self, slots: list[int]) -> list[Addr | None]:
        """``node_for`` of many slots from one look at the map (a batch groups its items
        per node); None for a slot that no node serves."""
        if not self.cluster:
            return [self.seeds[0]] * len(slots)
        table = self._slot_map()
        return [table[slot] for slot in slots]

    def _node_for(self, slot: int) -> Addr:
        if not self.cluster:
            return self.seeds[0]
        addr = self._slot_map()[slot]
        if addr is None:
            raise CommandRefused(f"slot {slot} is not served by any node")
        return addr

    def execute(
        self, slot: int, packed: bytes | PerNode, write: bool = False, first: Any = _UNSENT
    ) -> Any:
        """Run one packed command on the master of ``slot``; return its reply.

        ``packed`` may be a function of the node's replication id (see ``replid``),
        called for the node the command is sent to, after any redirection. A
        ``write`` waits for a replica when ``replica_ack`` is set. ``first``: the
        ``(addr, reply)`` of a first attempt already made (``execute_many``); a
        redirection or a STALETOKEN in it is followed here as if this had sent it.
        """
        if first is _UNSENT:
            addr = self._node_for(slot)
        else:
            addr = first[0]
        asking = False
        tries = 0
        while tries < MAX_REDIRECTS:
            tries += 1
            if first is not _UNSENT:
                reply, first = first[1], _UNSENT
            else:
                try:
                    data = packed if isinstance(packed, bytes) else packed(self.replid(addr))
                    if asking:
                        reply = self._call(addr, ASKING + data, 2, write)
                    else:
                        reply = self._call(addr, data, 1, write)
                except ConnectionLost:
                    self._lost(addr)
                    raise
            if not isinstance(reply, ReplyError):
                return reply
            message = str(reply)
            kind, _, rest = message.partition(" ")
            if kind == "STALETOKEN":  # the node is not the history we named: it did nothing
                self._replids[addr] = rest
                continue
            if kind in ("MOVED", "ASK"):
                self._replids.pop(addr, None)
                target = rest.split(" ")[1]
                host, _, port = target.rpartition(":")
                addr = (host or addr[0], int(port))
                asking = kind == "ASK"
                if kind == "MOVED":
                    self._stale = True  # the map changed: reload it on the next call
                continue
            if kind == "TRYAGAIN" and tries < MAX_REDIRECTS:
                # A multi-key script hit a slot being migrated; it did not run. The
                # migration of one slot takes milliseconds: wait, then ask again.
                self._pause()
                continue
            raise CommandRefused(message)
        raise CommandRefused(f"too many redirections for slot {slot}")

    def _lost(self, addr: Addr) -> None:
        """A call to ``addr`` failed: the node may be gone for good (a replica promoted
        elsewhere): ask the cluster for the map again on the next call. The call
        itself is not re-sent."""
        self._replids.pop(addr, None)
        if self.cluster:
            self._stale = True
            self._failed_at[addr] = time.monotonic()

    def execute_many(self, commands: list[tuple[int, bytes | PerNode, bool]]) -> list[Any]:
        """``execute`` of each ``(slot, packed, write)``; each one's reply, or the
        exception (ConnectionLost, CommandRefused) it raised, in its place.

        In a meinheld request the first attempts go out together, in one loop turn
        (one per node: a batch's), and their replies are awaited one after the other:
        the request parks about once instead of once per node. A redirection or a
        STALETOKEN is then followed one command at a time, as ``execute`` does.
        PERF: the batch endpoint's three calls per request (one per master) in
        flight together: see ``service/api/batch.py``.
        """
        hooks = self.hooks
        owner = hooks.current() if hooks is not None else None
        if owner is None or len(commands) < 2:
            return [_outcome(self.execute, slot, packed, write) for slot, packed, write in commands]
        sent: list[tuple[Addr, PipelinedNode, Any] | Exception] = []
        for slot, packed, write in commands:
            addr: Addr | None = None
            try:
                addr = self._node_for(slot)
                data = packed if isinstance(packed, bytes) else packed(self.replid(addr))
                pipe = self._pipe(addr)
                sent.append((addr, pipe, pipe.submit(data, owner, write)))
            except ConnectionLost as exc:
                if addr is not None:
                    self._lost(addr)
                sent.append(exc)
            except CommandRefused as exc:
                sent.append(exc)
        out: list[Any] = []
        for (slot, packed, write), started in zip(commands, sent, strict=True):
            if isinstance(started, Exception):
                out.append(started)
                continue
            addr, pipe, pending = started
            try:
                reply = pipe.wait(pending)
            except ConnectionLost as exc:
                self._lost(addr)
                out.append(exc)
                continue
            out.append(_outcome(self.execute, slot, packed, write, (addr, reply)))
        return out

    def _pipe(self, addr: Addr) -> PipelinedNode:
        """The worker's pipelined connection to ``addr`` (meinheld only), made once."""
        pipe = self._pipes.get(addr)
        if pipe is None:
            assert self.hooks is not None
            pipe = self._pipes[addr] = PipelinedNode(
                addr, self.timeout, self.hooks, self.replica_ack, handshake=self.handshake
            )
        return pipe

    def replid(self, addr: Addr) -> str:
        """The replication id of the node at ``addr`` (asked once per connection).

        It names the node's history: a promoted replica or a restarted node has a
        new one (see incr.lua). Forgotten when the connection fails or the node
        redirects, and corrected by a script that answers STALETOKEN.
        """
        known = self._replids.get(addr)
        if known is None:
            info = self._call(addr, pack("INFO", "replication"))
            if isinstance(info, ReplyError):
                raise CommandRefused(str(info))
            match = REPLID.search(info)
            if match is None:
                raise CommandRefused(f"no master_replid from {addr[0]}:{addr[1]}")
            known = self._replids[addr] = match.group(1).decode()
        return known

    def _pause(self) -> None:
        """Wait ``TRYAGAIN_PAUSE``: in a request through the loop (timers tick per second)."""
        hooks = self.hooks
        if hooks is not None and hooks.current() is not None:
            hooks.sleep(TRYAGAIN_PAUSE)
        else:  # a thread of its own (gthread, tools): sleeping blocks nobody else
            time.sleep(TRYAGAIN_PAUSE)

    def stuck(self) -> bool:
        """Whether a pipelined command has waited well past every deadline."""
        return any(pipe.stuck() for pipe in self._pipes.values())

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


def _outcome(run: Callable[..., Any], *args: Any) -> Any:
    """``run(*args)``, or the ConnectionLost or CommandRefused it raised (a value)."""
    try:
        return run(*args)
    except (ConnectionLost, CommandRefused) as exc:
        return exc
