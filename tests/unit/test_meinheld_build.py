"""The meinheld build the service trusts is the one deploy/build_meinheld.py makes."""

from __future__ import annotations

import importlib.util
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from service.fastpath.coop import SAFE_BUILD

BUILD = Path(__file__).resolve().parents[2] / "deploy" / "build_meinheld.py"


def test_the_trusted_build_is_the_version_the_build_script_installs() -> None:
    spec = importlib.util.spec_from_file_location("build_meinheld", BUILD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.LOCAL_VERSION == SAFE_BUILD


def test_the_installed_meinheld_is_that_build() -> None:
    try:
        installed = version("meinheld")
    except PackageNotFoundError:
        pytest.skip("meinheld is not installed")
    assert installed == SAFE_BUILD, "run: python deploy/build_meinheld.py (make install)"
