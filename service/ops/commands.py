"""``counterctl flush``, ``verify`` and ``rebucket``: output and exit codes of those tools."""

from __future__ import annotations

import sys

import psycopg
from redis.exceptions import RedisClusterException, RedisError

from service.flusher.flusher import Flusher
from service.flusher.loop import serve_forever
from service.flusher.pg_side import FlushDb
from service.flusher.redis_side import RedisSide
from service.migrate import check_layout
from service.ops.rebucket import NotReady, rebucket
from service.ops.verify import Finding, verify
from service.redis_conn import connect
from service.settings import Settings

BACKEND_ERRORS = (psycopg.Error, RedisError, RedisClusterException)


def flush_command(settings: Settings, once: bool) -> int:
    """``--once``: one full pass (waiting for partitions another flusher holds); else the loop."""
    if not once:
        return serve_forever(settings)  # checks the layout itself, waiting out an outage
    flusher = Flusher(settings)
    try:
        check_layout(settings)
        r = flusher.flush_all(wait=True)
    except BACKEND_ERRORS as exc:
        print(
            f"counterctl: flush failed, dirty marks kept for a later flush: {exc!r}",
            file=sys.stderr,
        )
        return 1
    finally:
        flusher.close()
    print(
        f"flush: {r.rows_written} rows written ({r.counters} dirty counters flushed, "
        f"{r.cleared} marks cleared, {r.repaired} repaired in redis)"
    )
    return 0


def _state(epoch: int, value: int) -> str:
    return str(value) if epoch == 0 else f"{value} (epoch {epoch})"


def _line(f: Finding) -> str:
    done = " -> repaired" if f.repaired else ""
    return (
        f"{f.kind}: tenant={f.row.tenant} namespace={f.row.namespace} "
        f"redis={_state(f.row.epoch, f.row.value)} postgres={_state(*f.pg)} "
        f"dirty={'yes' if f.dirty else 'no'}{done}"
    )


def verify_command(settings: Settings, sample: int | None, repair: bool, tenant: str | None) -> int:
    """Print each difference and a summary; exit 1 while a difference is left unrepaired."""
    db, side = FlushDb(settings.pg_dsn, lease=settings.flush_lease), None
    try:
        check_layout(settings)
        side = RedisSide(connect(settings), settings.buckets)
        report = verify(side, db, settings.buckets, sample=sample, repair=repair, tenant=tenant)
    except BACKEND_ERRORS as exc:
        print(f"counterctl: verify failed: {exc!r}", file=sys.stderr)
        return 2
    finally:
        db.close()
        if side is not None:
            side.close()
    for f in report.findings:
        print(_line(f))
    summary = (
        f"verify: {report.counters} counters, {len(report.findings)} differences, "
        f"{report.pending} pending flush"
    )
    if repair:
        summary += f", {len(report.findings) - len(report.unrepaired)} repaired"
    if report.only_in_postgres:
        summary += f", {report.only_in_postgres} only in postgres (hydrated on next use)"
    print(summary)
    return 1 if report.unrepaired else 0


def rebucket_command(settings: Settings, to: int) -> int:
    """1 when the deployment is not ready (the message says why), 2 on a backend error."""
    try:
        check_layout(settings)
        done = rebucket(settings, to)
    except NotReady as exc:
        print(f"counterctl: rebucket refused: {exc}", file=sys.stderr)
        return 1
    except BACKEND_ERRORS as exc:
        # Redis may be partly emptied: a cold cache of PostgreSQL, which is unchanged.
        print(f"counterctl: rebucket failed, PostgreSQL unchanged: {exc!r}", file=sys.stderr)
        return 2
    print(
        f"rebucket: {done.rows} rows moved from {settings.buckets} to {to} buckets, "
        f"{done.redis_keys} Redis keys deleted; start the service with COUNTER_BUCKETS={to}"
    )
    return 0
