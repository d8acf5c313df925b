"""All configuration, read once from ``COUNTER_*`` environment variables.

A bad value stops the process with one line naming the variable, so a typo in a
deployment fails at start instead of misbehaving under load.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, TypeVar

from service.keys import MAX_BUCKETS

T = TypeVar("T")
WORKER_CLASSES = {
    "meinheld": "service.api.worker.CounterWorker",
    "gthread": "gthread",
    "sync": "sync",
}


REDIS_CLIENTS = {"lean": 0, "redis-py": 0}


def default_workers() -> int:
    """One meinheld worker per core.

    PERF: with cooperative, pipelined Redis calls a worker keeps its core busy by
    itself, and fewer workers put more commands in each pipelined send; more
    workers only add context switches. Full benchmark on 2 cores (same run,
    ``benchmarks/results/20261126T084827Z.md``): 25,450 req/s with 2 workers,
    23,264 with 3, 21,854 with 4, 19,648 with 6. (Before pipelining, 3 was best.)
    """
    return os.cpu_count() or 1


LEAN_URL = re.compile(r"rediss?://[^@/:]+(:\d+)?(/0?)?")
# Variables whose value may hold a password: an error about one never shows the value.
SECRET_VARIABLES = frozenset({"COUNTER_PG_DSN", "COUNTER_REDIS_URL", "COUNTER_REDIS_PASSWORD"})


class SettingsError(ValueError):
    """A configuration variable is missing or invalid; the message names it."""


@dataclass(frozen=True)
class Settings:
    pg_dsn: str = field(repr=False)  # may hold a password
    redis_nodes: tuple[tuple[str, int], ...] = ()  # cluster mode when non-empty
    redis_url: str | None = field(default=None, repr=False)  # single-node mode
    redis_client: str = "lean"  # hot-path client: "lean" (hiredis sockets) or "redis-py"
    buckets: int = 4096
    partitions: int = 16
    bind: str = "127.0.0.1:8080"
    workers: int = field(default_factory=default_workers)
    worker_class: str = "meinheld"
    threads: int = 4
    keys_resync: float = 60.0  # seconds between full reloads of the API keys per worker
    redis_timeout: float = 2.0
    pg_pool_max: int = 4
    pg_connect_timeout: float = 2.0
    pg_statement_timeout: float = 2.0
    worker_connections: int = 1000  # client connections per meinheld worker; more get a 503
    auth_failures_per_s: float = 50.0  # 401s a worker answers at once per second; 0 = no tarpit
    auth_failure_delay: float = 2.0  # seconds (±1) a 401 beyond that budget is held (meinheld)
    replica_ack: bool = False  # answer 200 only once a replica has the increment (WAIT 1)
    replica_ack_timeout: float = 1.0  # seconds that WAIT waits before the request gets a 503
    max_body_bytes: int = 128 * 1024  # a batch of 1,000 items of 64-char namespaces fits
    max_header_bytes: int = 16384  # request line + headers; more get 431 (meinheld)
    max_headers: int = 64  # header fields per request; more get 431 (meinheld)
    header_timeout: int = 10  # seconds for the request line and headers (meinheld)
    body_timeout: int = 10  # seconds for the body, after the headers (meinheld)
    redis_username: str | None = None  # Redis ACL user (AUTH user password)
    redis_password: str | None = field(default=None, repr=False)  # AUTH on every connection
    redis_tls: bool = False  # TLS to Redis, certificate and host name verified
    redis_tls_ca: str | None = None  # CA bundle (PEM) for Redis; None: the system's
    redis_tls_cert: str | None = None  # client certificate (PEM), when Redis asks for one
    redis_tls_key: str | None = None  # its private key, unless it is in the certificate file
    flush_interval: float = 1.0
    flush_batch: int = 5000
    flush_lease: float = 3.0  # seconds a stuck flusher keeps its partitions before takeover
    flusher_metrics_port: int = 9108  # Prometheus endpoint of counter-flusher; 0 = off
    flusher_nice: int = 10  # added to counter-flusher's CPU niceness: requests come first
    log_level: str = "INFO"
    cors_origins: tuple[str, ...] = ()  # browser origins allowed (CORS); "*" = any; () = off

    @property
    def cluster(self) -> bool:
        return bool(self.redis_nodes)

    @property
    def gunicorn_worker_class(self) -> str:
        return WORKER_CLASSES[self.worker_class]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        get, d = _Reader(env), _defaults(cls)
        nodes: tuple[tuple[str, int], ...] = get("COUNTER_REDIS_NODES", _parse_nodes, ())
        url = get("COUNTER_REDIS_URL", _parse_redis_url, None)
        if nodes and url:
            raise SettingsError(
                "COUNTER_REDIS_NODES and COUNTER_REDIS_URL are both set: use one "
                "(NODES for a Redis Cluster, URL for a single Redis node)"
            )
        if not nodes and not url:
            raise SettingsError(
                "COUNTER_REDIS_NODES (host:port,... of a Redis Cluster) or "
                "COUNTER_REDIS_URL (redis://host:port/db of one node) is required"
            )
        client = get("COUNTER_REDIS_CLIENT", _choice(REDIS_CLIENTS), d["redis_client"])
        replica_ack = get("COUNTER_REPLICA_ACK", _flag, d["replica_ack"])
        if client == "redis-py" and replica_ack:
            raise SettingsError(
                "COUNTER_REPLICA_ACK=1 needs COUNTER_REDIS_CLIENT=lean: WAIT must follow the "
                "increment on the same connection"
            )
        if client == "lean" and url and not LEAN_URL.fullmatch(url):
            raise SettingsError(
                "COUNTER_REDIS_URL needs COUNTER_REDIS_CLIENT=redis-py: the lean client "
                "takes redis[s]://host:port[/0] (credentials in COUNTER_REDIS_USERNAME and "
                "COUNTER_REDIS_PASSWORD, database 0 only)"
            )
        username = get("COUNTER_REDIS_USERNAME", str, None)
        password = get("COUNTER_REDIS_PASSWORD", str, None)
        if username is not None and password is None:
            raise SettingsError("COUNTER_REDIS_USERNAME is set without COUNTER_REDIS_PASSWORD")
        tls = get("COUNTER_REDIS_TLS", _parse_flag, d["redis_tls"]) or bool(
            url and url.startswith("rediss://")
        )
        ca = get("COUNTER_REDIS_TLS_CA", _parse_file, None)
        cert = get("COUNTER_REDIS_TLS_CERT", _parse_file, None)
        key = get("COUNTER_REDIS_TLS_KEY", _parse_file, None)
        if not tls and (ca or cert or key):
            raise SettingsError(
                "COUNTER_REDIS_TLS_CA/CERT/KEY are set but COUNTER_REDIS_TLS is not 1"
            )
        if key and not cert:
            raise SettingsError("COUNTER_REDIS_TLS_KEY is set without COUNTER_REDIS_TLS_CERT")
        return cls(
            pg_dsn=get.required("COUNTER_PG_DSN", _parse_dsn),
            redis_nodes=nodes,
            redis_url=url,
            redis_client=client,
            buckets=get("COUNTER_BUCKETS", _int_in(1, MAX_BUCKETS), d["buckets"]),
            partitions=get("COUNTER_PARTITIONS", _int_in(1, 1024), d["partitions"]),
            bind=get("COUNTER_BIND", _parse_bind, d["bind"]),
            workers=get("COUNTER_WORKERS", _int_in(1, 256), d["workers"]),
            worker_class=get("COUNTER_WORKER_CLASS", _choice(WORKER_CLASSES), d["worker_class"]),
            threads=get("COUNTER_THREADS", _int_in(1, 256), d["threads"]),
            keys_resync=get("COUNTER_KEYS_RESYNC", _float_in(1, 86400), d["keys_resync"]),
            redis_timeout=get("COUNTER_REDIS_TIMEOUT", _float_in(0.01, 60), d["redis_timeout"]),
            pg_pool_max=get("COUNTER_PG_POOL_MAX", _int_in(1, 100), d["pg_pool_max"]),
            pg_connect_timeout=get(
                "COUNTER_PG_CONNECT_TIMEOUT", _float_in(0.1, 60), d["pg_connect_timeout"]
            ),
            pg_statement_timeout=get(
                "COUNTER_PG_STATEMENT_TIMEOUT", _float_in(0.01, 600), d["pg_statement_timeout"]
            ),
            worker_connections=get(
                "COUNTER_WORKER_CONNECTIONS", _int_in(1, 1_000_000), d["worker_connections"]
            ),
            auth_failures_per_s=get(
                "COUNTER_AUTH_FAILURES_PER_S", _float_in(0, 1e6), d["auth_failures_per_s"]
            ),
            auth_failure_delay=get(
                "COUNTER_AUTH_FAILURE_DELAY", _float_in(0, 60), d["auth_failure_delay"]
            ),
            replica_ack=replica_ack,
            replica_ack_timeout=get(
                "COUNTER_REPLICA_ACK_TIMEOUT", _float_in(0.001, 60), d["replica_ack_timeout"]
            ),
            max_body_bytes=get("COUNTER_MAX_BODY_BYTES", _int_in(0, 1 << 20), d["max_body_bytes"]),
            max_header_bytes=get(
                "COUNTER_MAX_HEADER_BYTES", _int_in(1024, 1 << 20), d["max_header_bytes"]
            ),
            max_headers=get("COUNTER_MAX_HEADERS", _int_in(1, 1024), d["max_headers"]),
            header_timeout=get("COUNTER_HEADER_TIMEOUT", _int_in(1, 3600), d["header_timeout"]),
            body_timeout=get("COUNTER_BODY_TIMEOUT", _int_in(1, 3600), d["body_timeout"]),
            redis_username=username,
            redis_password=password,
            redis_tls=tls,
            redis_tls_ca=ca,
            redis_tls_cert=cert,
            redis_tls_key=key,
            flush_interval=get(
                "COUNTER_FLUSH_INTERVAL", _float_in(0.01, 3600), d["flush_interval"]
            ),
            flush_batch=get("COUNTER_FLUSH_BATCH", _int_in(1, 1_000_000), d["flush_batch"]),
            flush_lease=get("COUNTER_FLUSH_LEASE", _float_in(1, 3600), d["flush_lease"]),
            flusher_metrics_port=get(
                "COUNTER_FLUSHER_METRICS_PORT", _int_in(0, 65535), d["flusher_metrics_port"]
            ),
            flusher_nice=get("COUNTER_FLUSHER_NICE", _int_in(0, 19), d["flusher_nice"]),
            log_level=get("COUNTER_LOG_LEVEL", _choice(_LOG_LEVELS), d["log_level"]),
            cors_origins=get("COUNTER_CORS_ORIGINS", _origins, d["cors_origins"]),
        )


_LOG_LEVELS = {"DEBUG": 0, "INFO": 0, "WARNING": 0, "ERROR": 0}


def _defaults(cls: type[Settings]) -> dict[str, Any]:
    """Each field's default, as the dataclass declares it: every default is written once."""
    out: dict[str, Any] = {}
    for f in fields(cls):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


class _Reader:
    """Reads one variable, converts it and wraps any error with the variable's name."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def __call__(self, name: str, parse: Callable[[str], T], default: T) -> T:
        raw = self.env.get(name, "").strip()
        return default if raw == "" else self._parse(name, raw, parse)

    def required(self, name: str, parse: Callable[[str], T]) -> T:
        raw = self.env.get(name, "").strip()
        if raw == "":
            raise SettingsError(f"{name} is required but not set")
        return self._parse(name, raw, parse)

    @staticmethod
    def _parse(name: str, raw: str, parse: Callable[[str], T]) -> T:
        try:
            return parse(raw)
        except ValueError as exc:
            if name in SECRET_VARIABLES:  # a typo must not print a password
                why = str(exc).replace(raw, "***")
                raise SettingsError(f"{name} is invalid (value not shown): {why}") from None
            raise SettingsError(f"{name}={raw!r} is invalid: {exc}") from None


N = TypeVar("N", int, float)


def _number_in(kind: Callable[[str], N], low: N, high: N) -> Callable[[str], N]:
    def parse(raw: str) -> N:
        value = kind(raw)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _origins(raw: str) -> tuple[str, ...]:
    """``https://a.example,https://b.example`` or ``*``; each origin scheme://host[:port]."""
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        if origin != "*" and not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?", origin):
            raise ValueError(f"not an origin: {origin!r} (scheme://host[:port], or *)")
    return origins


def _int_in(low: int, high: int) -> Callable[[str], int]:
    return _number_in(int, low, high)


def _float_in(low: float, high: float) -> Callable[[str], float]:
    return _number_in(float, low, high)


def _flag(raw: str) -> bool:
    if raw not in ("0", "1"):
        raise ValueError("must be 0 or 1")
    return raw == "1"


def _choice(options: Mapping[str, object]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in options:
            raise ValueError(f"must be one of {', '.join(sorted(options))}")
        return raw

    return parse


def _parse_host_port(raw: str) -> tuple[str, int]:
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{raw!r} is not host:port")
    return host.strip("[]"), int(port)


def _parse_nodes(raw: str) -> tuple[tuple[str, int], ...]:
    return tuple(_parse_host_port(part.strip()) for part in raw.split(",") if part.strip())


def _parse_bind(raw: str) -> str:
    _parse_host_port(raw)
    return raw


def _parse_redis_url(raw: str) -> str:
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must start with redis://, rediss:// or unix://")
    return raw


def _parse_flag(raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be 0 or 1")


def _parse_file(raw: str) -> str:
    if not os.path.isfile(raw):
        raise ValueError("no such file")
    return raw


def _parse_dsn(raw: str) -> str:
    if not raw.startswith(("postgresql://", "postgres://")) and "=" not in raw:
        raise ValueError("must be a postgresql:// URL or a key=value connection string")
    return raw
