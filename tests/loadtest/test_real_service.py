"""``loadtest/run.py`` against the real service on the test Redis Cluster and PostgreSQL.

The positive controls: every invariant holds in one process and with a master and two
workers, PostgreSQL included when the flusher runs. And the durability check shown to
fail: the same service with no flusher leaves PostgreSQL behind Redis, and the run exits 1.

The flusher runs only inside the runs that want it (never across the module), so the
run without one cannot be rescued by a flusher left over from another test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import pytest

from devstack import free_port
from service.apikeys import create_key
from tests.loadtest import harness

FLUSHER = harness.BIN / "counter-flusher"


@pytest.fixture(scope="module")
def pg_dsn(pg_dsns: dict[str, str]) -> str:
    """The cluster's database, for the module-scoped service (conftest's is per test)."""
    return pg_dsns["cluster"]


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory,
    pg_dsns: dict[str, str],
    cluster_servers: tuple[str, Any],
) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """gunicorn (2 workers) on the test Redis Cluster and its PostgreSQL; no flusher.

    Yields the LOADTEST_* environment for a run (host, keys of 3 fresh tenants) and the
    COUNTER_* environment the flusher needs.
    """
    pg_dsn = pg_dsns["cluster"]
    tmp = tmp_path_factory.mktemp("service")
    port = free_port()
    env = {
        **os.environ, "COUNTER_PG_DSN": pg_dsn, "COUNTER_REDIS_NODES": cluster_servers[0],
        "COUNTER_BIND": f"127.0.0.1:{port}", "COUNTER_WORKERS": "2",
        "COUNTER_FLUSH_INTERVAL": "0.5", "COUNTER_FLUSHER_METRICS_PORT": "0",
    }  # fmt: skip
    env.pop("COUNTER_REDIS_URL", None)
    gunicorn = [str(harness.BIN / "gunicorn"), "-c", "python:service.gunicorn_conf",
                "service.wsgi:app"]  # fmt: skip
    tenants = [f"lt{uuid.uuid4().hex[:10]}" for _ in range(3)]
    run_env = {
        "LOADTEST_HOST": f"http://127.0.0.1:{port}",
        "LOADTEST_API_KEYS": ",".join(create_key(pg_dsn, t)[1] for t in tenants),
    }
    with harness.process(gunicorn, env, tmp / "gunicorn.log") as web:
        harness.wait_http_ok(run_env["LOADTEST_HOST"] + "/readyz", web)
        yield run_env, env


def flushed(service: tuple[dict[str, str], dict[str, str]], pg_dsn: str, log: Path) -> tuple[
    AbstractContextManager[Any], dict[str, str]
]:  # fmt: skip
    """The flusher for one run and that run's PostgreSQL check settings (off without one)."""
    if not FLUSHER.exists():
        return nullcontext(), {"LOADTEST_PG_CHECK": "off"}
    checks = {"LOADTEST_PG_CHECK": "on", "LOADTEST_PG_DSN": pg_dsn, "LOADTEST_FLUSH_WAIT": "10"}
    return harness.process([str(FLUSHER)], service[1], log), checks


@pytest.fixture(scope="module")
def local_run(
    service: tuple[dict[str, str], dict[str, str]], pg_dsns: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> harness.Outcome:  # fmt: skip
    pg_dsn = pg_dsns["cluster"]
    tmp = tmp_path_factory.mktemp("local-run")
    flusher, checks = flushed(service, pg_dsn, tmp / "flusher.log")
    with flusher:
        env = {**service[0], **checks, "LOADTEST_DURATION": "8s", "LOADTEST_USERS": "6"}
        return harness.driver(env, tmp)


def test_real_service_keeps_every_invariant_in_all_scenarios(local_run: harness.Outcome) -> None:
    assert local_run.code == 0, local_run.output
    assert "RESULT: PASS" in local_run.output
    s = local_run.summary
    assert s["passed"] and s["violations"] == [] and s["inline_violation_count"] == 0
    assert s["acked"] > 100 and s["reads"] > 100 and s["counters"] > 10
    assert s["stats"]["requests"] > 0 and s["stats"]["error_ratio"] <= 0.01


def test_real_service_postgres_equals_redis_after_a_flush(local_run: harness.Outcome) -> None:
    if not FLUSHER.exists():
        pytest.skip(f"{FLUSHER} is not installed yet: the PostgreSQL == Redis part is skipped")
    assert local_run.summary["durability"].startswith("OK"), local_run.output


def test_without_a_flusher_postgres_differs_from_redis_and_the_run_fails(
    service: tuple[dict[str, str], dict[str, str]], pg_dsn: str, tmp_path: Path
) -> None:
    env = {**service[0], "LOADTEST_SCENARIO": "many", "LOADTEST_NAMESPACES": "20",
           "LOADTEST_DURATION": "3s", "LOADTEST_USERS": "4", "LOADTEST_PG_CHECK": "on",
           "LOADTEST_PG_DSN": pg_dsn, "LOADTEST_FLUSH_WAIT": "2"}  # fmt: skip
    run = harness.driver(env, tmp_path)
    assert run.code == 1, run.output
    s = run.summary
    assert set(s["violation_kinds"]) == {"durability"}, run.output
    written = s["violation_kinds"]["durability"]
    assert s["durability"].startswith(f"FAILED ({written} of {written} counters differ")
    assert written == s["counters"] > 1 and "no row in PostgreSQL" in run.output


def test_distributed_master_and_two_workers_merge_tallies_and_pass(
    service: tuple[dict[str, str], dict[str, str]], pg_dsn: str, tmp_path: Path
) -> None:
    flusher, checks = flushed(service, pg_dsn, tmp_path / "flusher.log")
    with flusher:
        env = {**service[0], **checks, "LOADTEST_WORKERS": "2", "LOADTEST_SCENARIO": "hot,many",
               "LOADTEST_DURATION": "6s", "LOADTEST_USERS": "6"}  # fmt: skip
        run = harness.driver(env, tmp_path)
    assert run.code == 0, run.output
    s = run.summary
    assert s["workers"] == "2 of 2 workers reported", run.output
    assert s["passed"] and s["acked"] > 100 and s["counters"] > 2
    assert (tmp_path / "hot+many.html").is_file() and (tmp_path / "hot+many_stats.csv").is_file()


def test_by_n_and_batches_keep_the_sum_of_acknowledged_bys(
    service: tuple[dict[str, str], dict[str, str]], pg_dsn: str, tmp_path: Path
) -> None:
    """Final == start + the sum of acknowledged ``by``s, per counter, PostgreSQL too."""
    flusher, checks = flushed(service, pg_dsn, tmp_path / "flusher.log")
    with flusher:
        env = {**service[0], **checks, "LOADTEST_SCENARIO": "by-n,batch",
               "LOADTEST_DURATION": "5s", "LOADTEST_USERS": "4"}  # fmt: skip
        run = harness.driver(env, tmp_path)
    assert run.code == 0, run.output
    s = run.summary
    assert s["passed"] and s["violations"] == [] and s["inline_violation_count"] == 0
    assert s["acked"] > 1000 and s["counters"] >= 50
