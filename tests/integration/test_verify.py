"""``counterctl verify`` and ``counterctl flush --once`` against real Redis and PostgreSQL."""

from __future__ import annotations

import re
from typing import Any

import pytest

from service import keys
from service.ops import cli
from service.settings import Settings
from tests.builders import NewTenant, backend_settings
from tests.flush_helpers import (
    dirty_names,
    flush,
    in_open_lineages,
    increment,
    pg_states,
    redis_states,
)

SUMMARY = re.compile(r"^verify: (\d+) counters, (\d+) differences, (\d+) pending flush")


@pytest.fixture(params=["cluster", "single"])
def backend(
    request: pytest.FixtureRequest, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Backend settings, also exported as COUNTER_* variables for the command line."""
    s = backend_settings(request, request.param, pg_dsn)
    monkeypatch.setenv("COUNTER_PG_DSN", pg_dsn)
    monkeypatch.delenv("COUNTER_REDIS_NODES", raising=False)
    monkeypatch.delenv("COUNTER_REDIS_URL", raising=False)
    if s.cluster:
        monkeypatch.setenv("COUNTER_REDIS_NODES", ",".join(f"{h}:{p}" for h, p in s.redis_nodes))
    else:
        monkeypatch.setenv("COUNTER_REDIS_URL", str(s.redis_url))
    return s


def counterctl(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = cli.main(list(args))
    return code, capsys.readouterr().out.strip().splitlines()


def summary(lines: list[str]) -> tuple[int, int, int]:
    match = SUMMARY.match(lines[-1])
    assert match, lines
    return int(match[1]), int(match[2]), int(match[3])


def test_flush_once_prints_rows_written_and_verify_then_finds_no_difference(
    backend: Settings,
    r: Any,
    pg_dsn: str,
    new_tenant: NewTenant,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tenant, _ = new_tenant()
    names = [f"v{i}" for i in range(60)]
    increment(r, backend.buckets, tenant, dict.fromkeys(names, 3))
    late = in_open_lineages(r, backend.buckets, tenant, names)  # settled, then written
    code, out = counterctl(capsys, "verify", "--tenant", tenant)
    assert (code, summary(out)) == (0, (60, 0, 60))  # dirty, not flushed yet: pending
    code, out = counterctl(capsys, "flush", "--once")
    assert code == 0
    written = re.match(r"^flush: (\d+) rows written", out[-1])
    assert written and int(written[1]) >= 60 - len(late)
    if late:
        assert counterctl(capsys, "flush", "--once")[0] == 0
    assert pg_states(pg_dsn, tenant) == dict.fromkeys(names, (0, 3))
    code, out = counterctl(capsys, "verify", "--tenant", tenant)
    assert (code, summary(out)) == (0, (60, 0, 0))
    increment(r, backend.buckets, tenant, {"v1": 1, "v2": 1})
    code, out = counterctl(capsys, "verify", "--tenant", tenant)
    assert (code, summary(out)) == (0, (60, 0, 2))


def test_postgres_ahead_of_redis_fails_verify_until_repaired(
    backend: Settings, r: Any, new_tenant: NewTenant, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant, _ = new_tenant()
    increment(r, backend.buckets, tenant, {"a": 9, "b": 2})
    flush(backend)
    bucket = keys.bucket_of(tenant, "a", backend.buckets)
    r.hset(keys.bucket_keys(bucket).values, f"{tenant}/a", 4)  # lost in a failover, no mark
    code, out = counterctl(capsys, "verify", "--tenant", tenant)
    assert code == 1
    assert out[0] == (f"postgres-ahead: tenant={tenant} namespace=a redis=4 postgres=9 dirty=no")
    assert summary(out) == (2, 1, 0)
    code, out = counterctl(capsys, "verify", "--tenant", tenant, "--repair")
    assert code == 0 and out[0].endswith("-> repaired") and out[-1].endswith("1 repaired")
    # The bucket got a new lineage; the next flush adds what Redis lacks (never overwrites).
    assert redis_states(r, backend.buckets, tenant, ["a"]) == {"a": (0, 4)}
    assert counterctl(capsys, "flush", "--once")[0] == 0
    assert redis_states(r, backend.buckets, tenant, ["a", "b"]) == {"a": (0, 9), "b": (0, 2)}
    code, out = counterctl(capsys, "verify", "--tenant", tenant)
    assert (code, summary(out)) == (0, (2, 0, 0))


def test_a_lost_dirty_mark_fails_verify_and_repair_gets_the_value_flushed(
    backend: Settings,
    r: Any,
    pg_dsn: str,
    new_tenant: NewTenant,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tenant, _ = new_tenant()
    increment(r, backend.buckets, tenant, {"m": 5})
    flush(backend)
    r.hincrby(
        keys.bucket_keys(keys.bucket_of(tenant, "m", backend.buckets)).values, f"{tenant}/m", 3
    )  # counted in Redis, but no dirty mark
    code, out = counterctl(capsys, "verify", "--tenant", tenant)
    assert code == 1 and out[0].startswith("unflushed: ") and "redis=8 postgres=5" in out[0]
    code, out = counterctl(capsys, "verify", "--tenant", tenant, "--repair")
    assert code == 0
    assert dirty_names(r, backend.buckets, tenant, ["m"]) == {"m"}
    counterctl(capsys, "flush", "--once")
    assert pg_states(pg_dsn, tenant) == {"m": (0, 8)}
    assert counterctl(capsys, "verify", "--tenant", tenant)[0] == 0


def test_verify_of_a_sample_and_of_everything(
    backend: Settings, r: Any, new_tenant: NewTenant, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant, _ = new_tenant()
    increment(r, backend.buckets, tenant, {f"s{i}": 1 for i in range(40)})
    flush(backend)
    code, out = counterctl(capsys, "verify", "--tenant", tenant, "--sample", "10")
    assert (code, summary(out)) == (0, (10, 0, 0))
    _, out = counterctl(capsys, "verify")  # every counter of every tenant, on every node
    assert summary(out)[0] >= 40


def test_verify_rejects_a_sample_below_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["verify", "--sample", "0"])
    assert exc.value.code == 2
