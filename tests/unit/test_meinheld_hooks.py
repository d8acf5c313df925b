"""Only the meinheld that deploy/build_meinheld.py builds gets cooperative waits.

Any other build logs one warning and gives no hooks: the app then blocks on Redis
and PostgreSQL as any other worker does (slower, still correct).
"""

from __future__ import annotations

import logging

import pytest

from service.fastpath import coop


def test_another_meinheld_build_logs_a_warning_and_gives_no_hooks(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(coop, "version", lambda name: "1.0.2")  # PyPI's build
    with caplog.at_level(logging.WARNING, logger="counter.coop"):
        assert coop.meinheld_hooks() is None
    assert [r.getMessage() for r in caplog.records] == [
        "meinheld 1.0.2 is not the build from deploy/build_meinheld.py: "
        "Redis waits block the worker (slower, still correct)"
    ]


def test_the_patched_build_gives_hooks_bound_to_this_thread(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("meinheld.server")
    monkeypatch.setattr(coop, "version", lambda name: coop.SAFE_BUILD)
    with caplog.at_level(logging.WARNING, logger="counter.coop"):
        hooks = coop.meinheld_hooks()
    assert hooks is not None and caplog.records == []
    assert not hooks.in_request()  # no request is running: waits must block here
