"""The one place that knows namespace rules, the bucket hash and Redis key names.

A counter lives in bucket ``xxh64("<tenant>/<namespace>") mod n_buckets``. Every
Redis key of a bucket carries the hash tag ``{<bucket>}`` so one Lua call can
touch the counter and its bucket's dirty mark atomically on one cluster node.
The bucket of a counter never moves; Redis Cluster moves slots, not buckets.
An API key's rate-limit state is ``rl:{<key id>}`` (``rate_key``).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import xxhash

NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
TENANT_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
INVALID_NAMESPACE = "Invalid namespace: must be 1–64 chars, alphanumeric, hyphen or underscore only"
# Buckets 0..65,535 (an integer column; `counterctl rebucket` widens an older smallint).
# Not more: a worker holds every bucket's key names and script keys, ~0.9 KB per bucket
# (59 MB at 65,536; the flusher 44 MB), and a flush pass scans every bucket
# (docs/deploying.md, the table of bucket counts).
MAX_BUCKETS = 65536


def is_valid_namespace(namespace: str) -> bool:
    """Full-string match: a valid prefix followed by anything else is invalid."""
    return NAME_RE.fullmatch(namespace) is not None


def is_valid_tenant(tenant: str) -> bool:
    return TENANT_RE.fullmatch(tenant) is not None


def member(tenant: str, namespace: str) -> str:
    """Field name of a counter inside its bucket ('/' appears in neither part)."""
    return f"{tenant}/{namespace}"


def split_member(field: str) -> tuple[str, str]:
    """``(tenant, namespace)`` of a member name: the inverse of ``member``."""
    tenant, _, namespace = field.partition("/")
    return tenant, namespace


def bucket_of(tenant: str, namespace: str, n_buckets: int) -> int:
    """Stable bucket: xxh64 (seed 0) of the UTF-8 member name, modulo the bucket count."""
    return bucket_of_member(member(tenant, namespace), n_buckets)


DIGEST = xxhash.xxh64_intdigest  # of a UTF-8 member name: its bucket is this modulo the count


def bucket_of_member(field: str, n_buckets: int) -> int:
    """``bucket_of`` for a member name already built (the hot path builds it once)."""
    return DIGEST(field.encode()) % n_buckets


def member_prefix(tenant: str) -> str:
    """What every ``member`` of ``tenant`` starts with (a batch adds each namespace)."""
    return f"{tenant}/"


class BucketKeys(NamedTuple):
    """Redis keys of one bucket, all in the same cluster slot."""

    values: str  # hash: member -> value
    epochs: str  # hash: member -> epoch, only for counters whose epoch > 0
    dirty: str  # sorted set: member -> first-dirty time in ms
    lineage: str  # string: "<node replid>:<start µs>:<o|s>", where the bucket's history comes from
    base: str  # hash: member -> value when an open lineage began (until it is settled)


# Each key of a bucket is c:{<bucket>}:<suffix>; the Lua headers name them c:{b}:<suffix>.
KEY_SUFFIXES = BucketKeys(values="v", epochs="e", dirty="d", lineage="l", base="b")


def bucket_keys(bucket: int) -> BucketKeys:
    tag = f"{{{bucket}}}"
    return BucketKeys(*(f"c:{tag}:{suffix}" for suffix in KEY_SUFFIXES))


def rate_key(key_id: int) -> str:
    """Rate-limit state of one API key: its id is the hash tag, so it has a slot of its own
    (never a counter's slot: a limit is decided before the increment, not in its script)."""
    return f"rl:{{{key_id}}}"


def idempotency_record(bucket: int, tenant: str, digest: str, item: int | None = None) -> str:
    """Where an Idempotency-Key's outcome is kept: a string in ``bucket``'s slot, so the
    script that changes the counter checks and records it atomically. ``digest`` is a
    hash of the client's key (any bytes it sends stay out of key names); ``item`` is a
    batch item's index (each item is recorded in its own counter's bucket)."""
    suffix = "" if item is None else f":{item}"
    return f"c:{{{bucket}}}:i:{tenant}:{digest}{suffix}"


def key_role(name: str) -> int:
    """Position in ``BucketKeys`` of a key named like ``c:{b}:v`` (any tag): 0 for values."""
    prefix, _, suffix = name.rpartition(":")
    if not (prefix.startswith("c:{") and prefix.endswith("}")) or suffix not in KEY_SUFFIXES:
        raise ValueError(f"{name!r} is not a bucket key c:{{<bucket>}}:<v|e|d|l|b>")
    return KEY_SUFFIXES.index(suffix)
