"""The API's Redis access: run a script or a command on a bucket, over either client.

``COUNTER_REDIS_CLIENT=lean`` (default) sends commands with ``LeanRedis``;
``redis-py`` with the general client. A client only has to send one command to
the master of a slot (``Transport``); ``CounterRedis`` does the rest once for both:
it runs a script of ``service.scripts`` on a bucket's keys with EVALSHA, and sends
the source with EVAL when the node answers NOSCRIPT (it did not run: safe). A new
script or operation is therefore one call here, not a method per client.
Both raise only ``RedisUnavailable``, so the store does not care which one runs.
The flusher and tools use redis-py directly (``service.redis_conn``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import NoScriptError, RedisClusterException, RedisError, ResponseError

from service.fastpath.coop import LoopHooks
from service.fastpath.handshake import handshake_for
from service.fastpath.lean_redis import CommandRefused, LeanRedis, PerNode
from service.fastpath.resp import ConnectionLost, Encoded, pack, pack_encoded, unpack_encoded
from service.keys import BucketKeys, bucket_keys, rate_key
from service.redis_conn import connect
from service.scripts import Script
from service.settings import Settings

Part = str | int | bytes
Node = object  # a name for a master, only compared (``Transport.nodes_of``)
Command = tuple[int, tuple[Any, ...]]  # (slot, command parts) of ``send_encoded_many``


class _Replid:
    """Stands in a command for the replication id of the node it is sent to."""

    def __repr__(self) -> str:
        return "REPLID"


REPLID = _Replid()  # see incr.lua: the script checks its node's history with it


class RedisUnavailable(Exception):
    """Redis failed, refused, or did not answer in time (outcome unknown for writes)."""


class Refused(RedisUnavailable):
    """Redis answered with an error (a redirection it could not follow, a slot being
    migrated, CLUSTERDOWN, ...): the command did not run."""


class ScriptMissing(Exception):
    """NOSCRIPT: the node does not hold the script, which therefore did not run."""


class Transport(Protocol):
    def send(self, slot: int, *command: Part | _Replid, write: bool = False) -> Any:
        """One command on the master of ``slot``; its reply. Raises ScriptMissing on
        NOSCRIPT, RedisUnavailable on any other failure; never re-sends."""
        ...

    def send_encoded(self, slot: int, *command: Part | Encoded | _Replid, write: bool) -> Any:
        """``send`` for a command with arguments already encoded (``Encoded``)."""
        ...

    def send_encoded_many(self, commands: list[Command], write: bool) -> list[Any]:
        """``send_encoded`` of each ``(slot, command)``, in flight together where the
        client can; each one's reply, or the exception it raised, in its place."""
        ...

    def node_of(self, slot: int) -> str:
        """A name for the master serving ``slot`` now (to group commands per node)."""
        ...

    def nodes_of(self, slots: list[int]) -> list[Node]:
        """The master serving each slot, as equal values for equal masters; None for a
        slot no master serves. Raises RedisUnavailable if the map cannot be had."""
        ...

    def ping(self) -> bool: ...
    def stuck(self) -> bool: ...
    def close(self) -> None: ...


class LeanTransport:
    def __init__(self, client: LeanRedis) -> None:
        self.client = client

    def send(self, slot: int, *command: Part | _Replid, write: bool = False) -> Any:
        if command[-1] is REPLID:  # PERF: where scripts take it, last: no scan
            head = command[:-1]
            return self._execute(slot, lambda replid: pack(*head, replid), write)  # type: ignore[arg-type]
        if REPLID in command:
            return self._execute(
                slot,
                lambda replid: pack(*(replid if p is REPLID else p for p in command)),  # type: ignore[arg-type]
                write,
            )
        return self._execute(slot, pack(*command), write)  # type: ignore[arg-type]

    def send_encoded(self, slot: int, *command: Part | Encoded | _Replid, write: bool) -> Any:
        if command[-1] is REPLID:
            return self._execute(slot, _with_replid(command[:-1]), write)
        return self._execute(slot, pack_encoded(*command), write)  # type: ignore[arg-type]

    def send_encoded_many(self, commands: list[Command], write: bool) -> list[Any]:
        packed: list[tuple[int, bytes | PerNode, bool]] = []
        for slot, command in commands:
            if command[-1] is REPLID:
                packed.append((slot, _with_replid(command[:-1]), write))
            else:
                packed.append((slot, pack_encoded(*command), write))
        return [
            _mapped(outcome) if isinstance(outcome, Exception) else outcome
            for outcome in self.client.execute_many(packed)
        ]

    def _execute(self, slot: int, packed: bytes | PerNode, write: bool) -> Any:
        """The lean client's call, its failures mapped to the transport's errors."""
        try:
            return self.client.execute(slot, packed, write)
        except (ConnectionLost, CommandRefused) as exc:
            raise _mapped(exc) from None

    def node_of(self, slot: int) -> str:
        try:
            host, port = self.client.node_for(slot)
        except (ConnectionLost, CommandRefused) as exc:
            raise RedisUnavailable(str(exc)) from None
        return f"{host}:{port}"

    def nodes_of(self, slots: list[int]) -> list[Node]:
        try:
            return list(self.client.nodes_for(slots))
        except ConnectionLost as exc:
            raise RedisUnavailable(str(exc)) from None

    def ping(self) -> bool:
        return self.client.ping_all()

    def stuck(self) -> bool:
        return self.client.stuck()

    def close(self) -> None:
        self.client.close()


def _with_replid(head: tuple[Any, ...]) -> PerNode:
    """``head`` packed with the replication id of the node it is sent to, last."""
    return lambda replid: pack_encoded(*head, replid)


def _mapped(exc: Exception) -> Exception:
    """The transport's error for a lean client's failure."""
    if isinstance(exc, ConnectionLost):
        return RedisUnavailable(str(exc))
    if str(exc).startswith("NOSCRIPT"):
        return ScriptMissing()
    return Refused(str(exc))


def one_by_one(transport: Transport, commands: list[Command], write: bool) -> list[Any]:
    """``send_encoded_many`` for a client that sends one command at a time."""
    out: list[Any] = []
    for slot, command in commands:
        try:
            out.append(transport.send_encoded(slot, *command, write=write))
        except (RedisUnavailable, ScriptMissing) as exc:
            out.append(exc)
    return out


class RedisPyTransport:
    """redis-py routes by the command's keys itself (EVALSHA included); ``slot`` only
    names the node whose replication id stands for ``REPLID``."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._replids: dict[str, str] = {}  # node name -> its replication id

    def send(self, slot: int, *command: Part | _Replid, write: bool = False) -> Any:
        try:
            if REPLID not in command:
                return self.client.execute_command(*command)
            answered: str | None = None
            for _ in range(3):  # a STALETOKEN answer did nothing: learn and send again
                node, known = self._replid(slot)
                replid = answered or known
                try:
                    return self.client.execute_command(
                        *(replid if p is REPLID else p for p in command)
                    )
                except ResponseError as exc:
                    kind, _, actual = str(exc).partition(" ")
                    if kind != "STALETOKEN":
                        raise
                    # redis-py may have followed ASK or MOVED: the node that answered is
                    # not necessarily the slot's. Send again with the id it gave, and read
                    # the slot's node afresh next time instead of caching a stranger's.
                    answered = actual
                    self._replids.pop(node, None)
            raise RedisUnavailable("the node's replication id kept changing")
        except NoScriptError:
            raise ScriptMissing() from None
        except ResponseError as exc:
            raise Refused(str(exc)) from None
        except RedisError as exc:
            raise RedisUnavailable(repr(exc)) from None

    def send_encoded(self, slot: int, *command: Part | Encoded | _Replid, write: bool) -> Any:
        parts: list[Part | _Replid] = []
        for part in command:
            if type(part) is Encoded:
                parts += unpack_encoded(part)
            else:
                parts.append(part)  # type: ignore[arg-type]
        return self.send(slot, *parts, write=write)

    def send_encoded_many(self, commands: list[Command], write: bool) -> list[Any]:
        return one_by_one(self, commands, write)

    def node_of(self, slot: int) -> str:
        if isinstance(self.client, RedisCluster):
            return str(self.client.nodes_manager.get_node_from_slot(slot).name)
        return "single"

    def nodes_of(self, slots: list[int]) -> list[Node]:
        nodes: list[Node] = []
        for slot in slots:
            try:
                nodes.append(self.node_of(slot))
            except (RedisError, RedisClusterException):  # no node serves it: refused later
                nodes.append(None)
        return nodes

    def _replid(self, slot: int) -> tuple[str, str]:
        """(name, replication id) of the master serving ``slot``."""
        node = self.client
        if isinstance(self.client, RedisCluster):
            served = self.client.nodes_manager.get_node_from_slot(slot)
            node = self.client.get_redis_connection(served)
        pool = node.connection_pool.connection_kwargs
        name = f"{pool.get('host')}:{pool.get('port')}"
        known = self._replids.get(name)
        if known is None:
            known = self._replids[name] = str(node.info("replication")["master_replid"])
        return name, known

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except RedisError:
            return False

    def stuck(self) -> bool:
        return False  # blocking calls with socket timeouts: nothing parks

    def close(self) -> None:
        self.client.close()


class CounterRedis:
    """Scripts and commands by bucket over one transport."""

    def __init__(self, transport: Transport, n_buckets: int) -> None:
        self.transport = transport
        # PERF: key names and cluster slot of every bucket computed once, not per request.
        self.keys: list[BucketKeys] = [bucket_keys(b) for b in range(n_buckets)]
        self._slots = [key_slot(k.values.encode()) for k in self.keys]
        self._script_keys: dict[Script, list[tuple[str, ...]]] = {}

    def run(
        self, script: Script, bucket: int, *args: Part | _Replid, extra: tuple[str, ...] = ()
    ) -> Any:
        """Run ``script`` on ``bucket``'s keys with ``args``; its reply.

        ``extra``: keys after the bucket's, in its slot (an idempotency record).
        """
        per_bucket = self._script_keys.get(script) or self._keys_of(script)
        keys = per_bucket[bucket] + extra if extra else per_bucket[bucket]
        return self._eval(script, self._slots[bucket], keys, args)

    def run_encoded_many(
        self, script: Script, calls: list[tuple[int, tuple[Any, ...]]]
    ) -> list[Any]:
        """``run`` of each ``(bucket, args)``, args already encoded among them (``Encoded``,
        a batch's: see ``service.api.batch``), in flight together where the client can
        (one per node); each one's reply, or the RedisUnavailable it met, in its place.
        A node without the script gets its source (EVAL), as in ``run``."""
        per_bucket = self._script_keys.get(script) or self._keys_of(script)
        slots = self._slots
        commands: list[Command] = []
        for bucket, args in calls:
            keys = per_bucket[bucket]
            commands.append((slots[bucket], ("EVALSHA", script.sha, len(keys), *keys, *args)))
        out = self.transport.send_encoded_many(commands, write=True)
        for i, outcome in enumerate(out):
            if isinstance(outcome, ScriptMissing):  # it did not run: send the source
                slot, (_, _, *rest) = commands[i]  # rest: the key count, keys, args
                try:
                    out[i] = self._eval_source(script, slot, rest, self.transport.send_encoded)
                except RedisUnavailable as exc:
                    out[i] = exc
                except ScriptMissing:  # not after EVAL: never, but never a value either
                    out[i] = RedisUnavailable("NOSCRIPT after EVAL")
        return out

    def _keys_of(self, script: Script) -> list[tuple[str, ...]]:
        """``script``'s KEYS for every bucket, built on its first call."""
        per_bucket = self._script_keys.get(script)
        if per_bucket is None:
            per_bucket = self._script_keys[script] = [script.keys(k) for k in self.keys]
        return per_bucket

    def run_for_key(self, script: Script, key_id: int, *args: Part) -> Any:
        """Run a ``per_key`` script on API key ``key_id``'s own key (its own slot)."""
        key = rate_key(key_id)
        return self._eval(script, key_slot(key.encode()), (key,), args)

    def _eval(
        self,
        script: Script,
        slot: int,
        keys: tuple[str, ...],
        args: Any,
        send: Callable[..., Any] | None = None,
    ) -> Any:
        """EVALSHA, then EVAL on NOSCRIPT, through ``send`` (the transport's ``send``,
        or its ``send_encoded`` for arguments already encoded)."""
        send = send or self.transport.send
        try:
            return send(slot, "EVALSHA", script.sha, len(keys), *keys, *args, write=True)
        except ScriptMissing:
            return self._eval_source(script, slot, [len(keys), *keys, *args], send)

    @staticmethod
    def _eval_source(script: Script, slot: int, rest: list[Any], send: Callable[..., Any]) -> Any:
        """EVAL with ``rest`` (the key count, the keys, the args): it runs the script and
        caches it on whichever node the command lands on after redirections (SCRIPT LOAD
        by slot would miss an ASK target)."""
        return send(slot, "EVAL", script.source, *rest, write=True)

    def call(self, bucket: int, *command: Part) -> Any:
        """Send ``command`` (naming keys of ``bucket``) to the master of its slot."""
        try:
            return self.transport.send(self._slots[bucket], *command)
        except ScriptMissing:
            raise RedisUnavailable("NOSCRIPT outside a script call") from None

    def node_of(self, bucket: int) -> str:
        """The master serving ``bucket`` now, by name (commands are grouped per node)."""
        return self.transport.node_of(self._slots[bucket])

    def nodes_of(self, buckets: list[int]) -> list[Node]:
        """The master serving each bucket now (``Transport.nodes_of``)."""
        slots = self._slots
        return self.transport.nodes_of([slots[b] for b in buckets])

    def ping(self) -> bool:
        return self.transport.ping()

    def stuck(self) -> bool:
        """A command has waited well past every deadline (see ``PipelinedNode.stuck``)."""
        return self.transport.stuck()

    def close(self) -> None:
        self.transport.close()


def open_access(settings: Settings, hooks: LoopHooks | None = None) -> CounterRedis:
    """Build the configured client; called in the worker, after fork.

    ``hooks``: meinheld's loop, passed in by the composition root; None blocks the thread.
    """
    if settings.redis_client == "redis-py":
        return CounterRedis(RedisPyTransport(connect(settings)), settings.buckets)
    if settings.cluster:
        seeds, cluster = list(settings.redis_nodes), True
    else:
        url = urlsplit(settings.redis_url or "")  # redis[s]://host:port[/0], see Settings
        seeds, cluster = [(url.hostname or "127.0.0.1", url.port or 6379)], False
    client = LeanRedis(
        seeds,
        cluster=cluster,
        timeout=settings.redis_timeout,
        wait=hooks.wait_readable if hooks is not None else None,
        hooks=hooks,
        replica_ack=settings.replica_ack_timeout if settings.replica_ack else None,
        handshake=handshake_for(settings),
    )
    return CounterRedis(LeanTransport(client), settings.buckets)
