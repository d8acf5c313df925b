"""Throwaway local Redis Cluster / Redis / PostgreSQL servers for tests and `make up/run`.

Plain child processes on free ports: nothing here depends on, or touches, the
machine's own database services.
"""

from .ports import free_port, wait_for_port
from .postgres_server import PostgresServer, pg_bindir
from .redis_cluster import NodeInfo, RedisCluster
from .redis_servers import Placement, RedisNode, RedisSingle

__all__ = [
    "NodeInfo",
    "Placement",
    "PostgresServer",
    "RedisCluster",
    "RedisNode",
    "RedisSingle",
    "free_port",
    "pg_bindir",
    "wait_for_port",
]
