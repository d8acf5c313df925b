from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.settings import Settings
from tests.e2e.server import Gunicorn, settings_env


@pytest.fixture(scope="session")
def service_url(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real service behind gunicorn + meinheld, once per Redis backend."""
    log: Path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    server = Gunicorn(settings_env(settings), log)
    try:
        server.wait_ready()
        yield server.url
    finally:
        server.stop()
