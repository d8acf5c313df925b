"""PostgreSQL side of the durability check: only the counters this run touched.

Keys are mapped to tenants the way the service does (SHA-256 of the key in
``api_keys``), so the check needs nothing but the DSN. Rows are looked up by their
full primary key ``(bucket, tenant, namespace)`` when the service's bucket hash is
importable, so the check stays cheap on a large ``counters`` table.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import psycopg

from .invariants import Violation, compare_durable
from .tally import split_counter_id

bucket_of: Callable[[str, str, int], int] | None
try:
    from service.keys import bucket_of
except ImportError:  # run from a machine without the service package: match without bucket
    bucket_of = None


def resolve_tenants(conn: psycopg.Connection, keys: tuple[str, ...]) -> dict[int, str]:
    """Key index -> tenant, for the keys PostgreSQL knows (revoked ones included)."""
    hashes = [hashlib.sha256(k.encode()).digest() for k in keys]
    rows = conn.execute(
        "SELECT key_hash, tenant FROM api_keys WHERE key_hash = ANY(%s)", (hashes,)
    ).fetchall()
    tenant_of_hash = {bytes(h): t for h, t in rows}
    return {i: tenant_of_hash[h] for i, h in enumerate(hashes) if h in tenant_of_hash}


def read_stored(
    conn: psycopg.Connection, tenants: dict[int, str], cids: list[str]
) -> dict[str, int | None]:
    """The value PostgreSQL holds for each counter (None: no row)."""
    wanted = {}
    for cid in cids:
        index, namespace = split_counter_id(cid)
        wanted[(tenants[index], namespace)] = cid
    pairs = list(wanted)
    if bucket_of is not None:
        row = conn.execute("SELECT value FROM meta WHERE key = 'buckets'").fetchone()
        n_buckets = int(row[0]) if row else 4096
        rows = conn.execute(
            "SELECT c.tenant, c.namespace, c.value FROM counters c"
            " JOIN unnest(%s::integer[], %s::text[], %s::text[]) AS w(bucket, tenant, namespace)"
            " USING (bucket, tenant, namespace)",
            (
                [bucket_of(t, ns, n_buckets) for t, ns in pairs],
                [t for t, _ in pairs],
                [ns for _, ns in pairs],
            ),
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT c.tenant, c.namespace, c.value FROM counters c"
            " JOIN unnest(%s::text[], %s::text[]) AS w(tenant, namespace)"
            " USING (tenant, namespace)",
            ([t for t, _ in pairs], [ns for _, ns in pairs]),
        ).fetchall()
    stored: dict[str, int | None] = dict.fromkeys(cids)
    for tenant, namespace, value in rows:
        stored[wanted[(tenant, namespace)]] = int(value)
    return stored


def wait_for_flush(
    dsn: str,
    keys: tuple[str, ...],
    cids: list[str],
    read_api: Callable[[list[str]], dict[str, int]],
    timeout: float,
    interval: float = 0.5,
) -> tuple[list[Violation], float]:
    """Poll until PostgreSQL equals the API for every counter, or time out.

    Returns the differences left at the deadline (none on success) and the seconds waited.
    The API is read afresh each round: an increment that was still in flight when the
    load stopped may land after the final read, and the flusher then catches up with it.
    """
    began = time.monotonic()
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        tenants = resolve_tenants(conn, keys)
        unknown = sorted({split_counter_id(c)[0] for c in cids} - tenants.keys())
        if unknown:
            return [Violation(
                "durability", "run", "every API key in this PostgreSQL's api_keys",
                f"key(s) #{', #'.join(map(str, unknown))} unknown: wrong --pg-dsn?",
            )], 0.0  # fmt: skip
        while True:
            found = compare_durable(read_api(cids), read_stored(conn, tenants, cids))
            waited = time.monotonic() - began
            if not found or waited >= timeout:
                return found, waited
            time.sleep(interval)
