"""Fault suite fixtures: a shared throwaway PostgreSQL, leftovers cleanup, the report.

Scenarios (marked `fault`) are skipped unless selected with `-m fault` or
COUNTER_FAULTS=1, so `make test` stays quick; `make faults` selects them and
sets COUNTER_FAULTS_REPORT to the directory the report goes to.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import PostgresServer, pg_bindir
from devstack.netns import cleanup_leftovers
from tests.faults import report
from tests.faults.history import Verdict
from tests.faults.scenario import QUICK, load_note

RESULTS: list[tuple[Verdict, bool]] = []  # (verdict, expected to fail today)
STARTED = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    selected = "fault" in (config.getoption("markexpr") or "") or os.environ.get("COUNTER_FAULTS")
    if selected:
        return
    skip = pytest.mark.skip(reason="fault scenario: run with `make faults` or `pytest -m fault`")
    for item in items:
        if item.get_closest_marker("fault") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _no_leftover_namespaces() -> Iterator[None]:
    """Namespaces a crashed earlier run left behind go first; ours go at the end."""
    cleanup_leftovers()
    yield
    cleanup_leftovers()


@pytest.fixture(scope="session")
def fault_pg() -> Iterator[str]:
    """One PostgreSQL for the scenarios that do not black-hole it (each uses its own tenant)."""
    if pg_bindir() is None:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.cleanup()


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Iterator[list[Verdict]]:
    """Verdicts a scenario adds here go into the report (also when it then fails); a
    scenario marked xfail is reported as expected to fail today."""
    verdicts: list[Verdict] = []
    yield verdicts
    expected = request.node.get_closest_marker("xfail") is not None
    RESULTS.extend((v, expected) for v in verdicts)


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get("COUNTER_FAULTS_REPORT")
    if not target or not RESULTS:
        return
    expected = frozenset(v.scenario for v, xfail in RESULTS if xfail)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    meta = {
        "started": STARTED,
        "mode": "quick" if QUICK else "full",
        "load": load_note(),
        "machine": f"{platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "commit": commit,
    }
    text = report.render([v for v, _ in RESULTS], meta, expected)
    for path in report.write(text, Path(target), STARTED):
        print(f"\nfault report: {path}")
