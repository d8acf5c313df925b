"""The OpenAPI description (issue 15, item 7): served at /openapi.json, every response
the suite provokes conforms to it (schemathesis, all checks, stateful too), a client
generated from it works, and the seed's endpoints stay compatible with the reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import falcon
import falcon.testing
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from service.api.app import create_app
from service.api.store import CounterStore
from service.settings import Settings
from tests.builders import NewTenant

SPEC = Path(__file__).resolve().parents[2] / "service" / "api" / "openapi.json"
REFERENCE = (
    Path(__file__).resolve().parents[3] / "shared" / "reference" / "requiems-counter-openapi.json"
)


def test_the_spec_is_served_without_a_key(client: Any) -> None:
    resp = client.simulate_get("/openapi.json")
    assert resp.status_code == 200 and resp.json == json.loads(SPEC.read_text())
    assert resp.json["openapi"].startswith("3.1")


@pytest.mark.skipif(not REFERENCE.exists(), reason="shared/reference is not beside the repo")
def test_the_seed_endpoints_stay_compatible_with_the_reference() -> None:
    """Every path, method, parameter and response code of the reference is ours too."""
    ours, ref = json.loads(SPEC.read_text()), json.loads(REFERENCE.read_text())
    for path, ops in ref["paths"].items():
        for method, op in ops.items():
            if method == "parameters":
                continue
            mine = ours["paths"][path][method]
            assert set(op["responses"]) <= set(mine["responses"]), (path, method)
            for status in op["responses"]:
                schema = mine["responses"][status]["content"]["application/json"]["schema"]
                assert schema["$ref"].rsplit("/", 1)[1] in ("CounterEnvelope", "Error")
    assert ours["components"]["securitySchemes"] == ref["components"]["securitySchemes"]
    assert (
        ours["components"]["parameters"]["namespace"]["schema"]["pattern"]
        == (ref["components"]["parameters"]["namespace"]["schema"]["pattern"])
    )


@pytest.fixture
def app_and_key(
    settings: Settings, store: CounterStore, new_tenant: NewTenant
) -> tuple[falcon.App[falcon.Request, falcon.Response], str]:
    _, key = new_tenant()
    return create_app(settings, store=store), key


# Every check runs but two, whose premises this API contradicts by design:
# - use_after_free: DELETE is a reset (README): a GET after it is a 200 with 0.
# - positive_data_acceptance: two schema-valid parts can disagree, and a 400 or 422 is
#   the right answer: ``?by=2`` with ``{"by": 3}``, or a reused Idempotency-Key with
#   another request (hypothesis repeats short keys). Both are tested on their own.
EXCLUDED = ("use_after_free", "positive_data_acceptance")


def _schema(app: falcon.App[falcon.Request, falcon.Response], key: str) -> Any:
    """The served spec, with the tenant's key supplied as its security scheme says (so
    that ignored_auth knows which requests carried it)."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)

    @schema.auth()
    class KeyAuth:
        def get(self, case: Any, ctx: Any) -> str:
            return key

        def set(self, case: Any, data: str, ctx: Any) -> None:
            case.headers = {**(case.headers or {}), "requiems-api-key": data}

    return schema


def test_every_response_conforms_to_the_spec(
    app_and_key: tuple[falcon.App[falcon.Request, falcon.Response], str],
) -> None:
    app, key = app_and_key
    schema = _schema(app, key)
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(
            max_examples=15,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            case.call_and_validate(excluded_checks=_excluded())

        try:
            run()
        except Exception as exc:  # collect every operation's failures, then report
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


def _excluded() -> list[Any]:
    from schemathesis.checks import CHECKS

    return [c for c in CHECKS.get_all() if c.__name__ in EXCLUDED]


def test_sequences_of_calls_conform_to_the_spec(
    app_and_key: tuple[falcon.App[falcon.Request, falcon.Response], str],
) -> None:
    """Stateful: schemathesis chains calls along the links it infers (a namespace one
    call used is used by the next), checking every response."""
    app, key = app_and_key
    schema = _schema(app, key)
    base = schema.as_state_machine()
    excluded = _excluded()

    class Machine(base):  # type: ignore[valid-type,misc]
        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, excluded_checks=excluded)

    Machine.run(
        settings=settings(
            max_examples=8,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
    )


def test_a_client_generated_from_the_spec_works(
    app_and_key: tuple[falcon.App[falcon.Request, falcon.Response], str], tmp_path: Path
) -> None:
    """openapi-python-client generates offline; the client talks to the app in-process."""
    import importlib
    import subprocess
    import sys

    import httpx

    exe = Path(sys.executable).parent / "openapi-python-client"
    if not exe.exists():
        pytest.skip("openapi-python-client is not installed (pip install -e .[dev])")
    out = subprocess.run(
        [
            str(exe),
            "generate",
            "--path",
            str(SPEC),
            "--output-path",
            str(tmp_path / "gen"),
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        pkg = "gen"
        client_mod = importlib.import_module(f"{pkg}.client")
        increment = importlib.import_module(f"{pkg}.api.misc.increment_counter_misc")
        batch = importlib.import_module(f"{pkg}.api.technology.increment_counters")
        get = importlib.import_module(f"{pkg}.api.technology.get_counter")
        models = importlib.import_module(f"{pkg}.models")
        app, key = app_and_key
        client = client_mod.AuthenticatedClient(
            base_url="http://testserver",
            token=key,
            prefix="",
            auth_header_name="requiems-api-key",
            httpx_args={"transport": httpx.WSGITransport(app=app)},
        )
        first = increment.sync(client=client, namespace="gen", by=5)
        assert first.data.namespace == "gen" and first.data.value == 5
        body = models.BatchBody(
            increments=[models.BatchBodyIncrementsItem(namespace="gen", by=2)] * 2
        )
        results = batch.sync(client=client, body=body).data.results
        assert [r.value for r in results] == [7, 9]
        assert get.sync(client=client, namespace="gen").data.value == 9
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "gen" or m.startswith("gen.")]:
            del sys.modules[name]
