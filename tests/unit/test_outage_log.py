"""A backend outage is logged when it starts and when it ends, not once per request."""

import logging

import pytest

from service.logs import OutageLog


def test_an_outage_logs_one_line_down_and_one_line_up(caplog: pytest.LogCaptureFixture) -> None:
    outage = OutageLog(logging.getLogger("test.outage"), "redis")
    with caplog.at_level(logging.INFO, logger="test.outage"):
        outage.ok()
        for _ in range(100):
            outage.failed("timeout")
        for _ in range(100):
            outage.ok()
        outage.failed("again")
    assert [r.getMessage() for r in caplog.records] == [
        "redis unavailable",
        "redis available again",
        "redis unavailable",
    ]
