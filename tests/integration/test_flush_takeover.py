"""A flusher stopped or hung while it owns a partition loses it after the lease.

Ownership is a session advisory lock: a dead flusher's session ends and frees it,
but a stopped one (SIGSTOP, a hung host) keeps its session open. Another flusher
terminates a holder whose session stayed idle past the lease, which also kills its
open transaction, so the stuck flusher can never commit a stale batch afterwards.
The fault suite (scenario f2) does the same with real flusher processes.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from service.flusher.pg_side import FlushDb

PARTITION = 7


def test_an_idle_holder_keeps_its_partition_within_the_lease_and_loses_it_after(
    pg_dsn: str,
) -> None:
    stuck, other = FlushDb(pg_dsn, lease=1.5), FlushDb(pg_dsn, lease=1.5)
    try:
        assert stuck.lock(PARTITION, wait=False)
        with stuck.transaction():  # stopped mid-batch: a transaction left open
            stuck.conn().execute("SELECT 1")
            assert not other.lock(PARTITION, wait=False)  # within the lease: left alone
            time.sleep(2.0)
            assert other.lock(PARTITION, wait=False)  # past it: taken over
            with pytest.raises(psycopg.OperationalError):
                stuck.conn().execute("SELECT 1")  # its session is gone: it commits nothing
    finally:
        other.unlock(PARTITION)
        other.close()
        stuck.close()


def test_a_holder_that_is_working_is_never_taken_over(pg_dsn: str) -> None:
    busy, other = FlushDb(pg_dsn, lease=1.0), FlushDb(pg_dsn, lease=1.0)
    try:
        assert busy.lock(PARTITION + 1, wait=False)
        for _ in range(6):  # it keeps using its session, as a pass does
            busy.conn().execute("SELECT 1")
            assert not other.lock(PARTITION + 1, wait=False)
            time.sleep(0.3)
        busy.conn().execute("SELECT 1")  # still alive
    finally:
        busy.unlock(PARTITION + 1)
        busy.close()
        other.close()


def test_a_holder_stopped_mid_copy_loses_its_partition_after_the_lease(pg_dsn: str) -> None:
    """A flusher stopped while streaming its COPY leaves its session *active*, waiting to
    read from the client (ClientRead), not idle: that is stuck all the same. (Seen in CI:
    flusher a SIGSTOPped holding every partition, none taken over within 6 s.)"""
    stuck, other = FlushDb(pg_dsn, lease=1.0), FlushDb(pg_dsn, lease=1.0)
    try:
        assert stuck.lock(PARTITION + 2, wait=False)
        conn = stuck.conn()
        conn.execute("CREATE TEMP TABLE staged (bucket int, value bigint)")
        with pytest.raises(psycopg.OperationalError), stuck.transaction():
            with conn.cursor().copy("COPY staged FROM STDIN") as copy:
                copy.write(b"1\t1\n")
                assert not other.lock(PARTITION + 2, wait=False)  # within the lease
                time.sleep(1.5)  # the COPY is open, nothing more comes: stopped
                assert other.lock(PARTITION + 2, wait=False)  # past it: taken over
            # leaving the block ends the COPY on a terminated session: it commits nothing
    finally:
        other.unlock(PARTITION + 2)
        other.close()
        stuck.close()


def test_a_flusher_connection_commits_durably_and_bounds_its_waits(pg_dsn: str) -> None:
    """flush.sql's session settings (one statement of three SETs) all reach the session:
    a mark is cleared only after a durable commit, and lock and statement waits end."""
    db = FlushDb(pg_dsn, lease=1.0)
    try:
        conn = db.conn()
        shown = {
            name: conn.execute(f"SHOW {name}").fetchone()
            for name in ("synchronous_commit", "lock_timeout", "statement_timeout")
        }
        assert shown == {
            "synchronous_commit": ("on",),
            "lock_timeout": ("1min",),
            "statement_timeout": ("2min",),
        }
    finally:
        db.close()
