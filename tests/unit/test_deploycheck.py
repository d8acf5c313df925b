"""deploy/deploycheck: the deployment files are held to what the code reads and serves."""

from deploy.deploycheck import compose, dockerfile, k8s, rules
from deploy.deploycheck.workload import Workload
from deploy.docker.healthcheck import probe_url
from service.settings import Settings

DSN = {"COUNTER_PG_DSN": "postgresql://u@db/counter", "COUNTER_REDIS_NODES": "r1:6379"}
API = ["gunicorn", "-c", "python:service.gunicorn_conf", "service.wsgi:app"]
IMAGE = dockerfile.final_image(
    "FROM python AS base\nENV COUNTER_BIND=0.0.0.0:8080 \\\n    PATH=/v/bin\nEXPOSE 8080\n"
    f"CMD {API!r}\n".replace("'", '"')
    + "FROM base AS app\n"
)


def api_pod(grace: int, pre_stop: int, probe_port: object = "http") -> dict[str, object]:
    container = {
        "name": "api",
        "image": "registry.example/counter-service:1.0",
        "envFrom": [{"configMapRef": {"name": "cfg"}}],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": probe_port}},
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(pre_stop)]}}},
    }
    spec = {"terminationGracePeriodSeconds": grace, "containers": [container]}
    return {
        "kind": "Deployment",
        "metadata": {"name": "counter-api"},
        "spec": {"template": {"metadata": {}, "spec": spec}},
    }


CONFIG = {"kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": DSN}


def test_the_variable_list_is_read_from_the_settings_source_so_new_settings_count() -> None:
    source = 'get("COUNTER_BUCKETS", int, 1)\nget("COUNTER_DRAIN_SECONDS", float, 20)'
    assert rules.known_variables(source) == {"COUNTER_BUCKETS", "COUNTER_DRAIN_SECONDS"}


def test_a_misspelt_variable_and_a_value_the_service_refuses_are_reported() -> None:
    doc = {
        "services": {
            "api": {
                "image": "counter-service:dev",
                "environment": {**DSN, "COUNTER_WORKER": "2", "COUNTER_BUCKETS": "${BUCKETS:-0}"},
            }
        }
    }
    [w] = compose.workloads(doc, "compose.yaml", IMAGE, "counter-service", {})
    assert w.command == API and w.env["COUNTER_BUCKETS"] == "0"  # image CMD, file default
    known = {"COUNTER_PG_DSN", "COUNTER_REDIS_NODES", "COUNTER_BUCKETS", "COUNTER_BIND"}
    assert rules.variable_problems(w, known) == [
        "compose.yaml: service api: COUNTER_WORKER is not a variable service/settings.py reads"
    ]
    del w.env["COUNTER_WORKER"]
    [refused] = rules.settings_problems(w, Settings.from_env)
    assert "COUNTER_BUCKETS='0' is invalid" in refused


def test_kubernetes_grace_must_cover_prestop_and_gunicorns_graceful_timeout() -> None:
    [[short], _] = k8s.workloads([CONFIG, api_pod(grace=25, pre_stop=10)], IMAGE, "counter-service")
    assert (short.stop_grace, short.pre_stop) == (25.0, 10.0)
    assert "leaves 15 s" in rules.grace_problems(short, graceful_timeout=20)[0]
    [[enough], _] = k8s.workloads(
        [CONFIG, api_pod(grace=40, pre_stop=10)], IMAGE, "counter-service"
    )
    assert rules.grace_problems(enough, graceful_timeout=20) == []


def test_probes_must_reach_the_port_the_settings_make_the_api_listen_on() -> None:
    [[w], problems] = k8s.workloads(
        [CONFIG, api_pod(40, 10, probe_port=8081)], IMAGE, "counter-service"
    )
    assert problems == [] and w.ports == {8080}
    settings = Settings.from_env(w.env)
    assert rules.port_problems(w, settings) == [
        "Deployment counter-api container api: probes or scrapes port 8081, but gunicorn "
        "listens on 8080"
    ]
    w.probe_ports = {8080}
    assert rules.port_problems(w, settings) == []


def test_commands_are_the_projects_own_with_the_documented_arguments() -> None:
    def check(command: list[str]) -> list[str]:
        return rules.command_problems(
            Workload("f", command),
            {"gunicorn", "counter-flusher", "counterctl"},
            API,
            module_exists=lambda m: m in ("service.gunicorn_conf", "service.wsgi"),
            cli_accepts=lambda args: args[:1] == ["migrate"],
        )

    assert (
        check(API) == []
        and check(["counter-flusher"]) == []
        and check(["counterctl", "migrate"]) == []
    )
    assert "differs from the documented" in check([*API[:3], "service.app:app"])[0]
    assert "does not exist" in check([*API[:3], "service.app:app"])[1]
    assert "does not install" in check(["celery", "worker"])[0]
    assert "rejects" in check(["counterctl", "migrat"])[0]


def test_the_image_must_build_meinheld_after_installing_the_project() -> None:
    script = "deploy/build_meinheld.py"
    assert dockerfile.runs_script_after_install(["pip install . && python " + script], script)
    assert dockerfile.runs_script_after_install(["pip install '.[x]'", "python " + script], script)
    assert not dockerfile.runs_script_after_install(["python " + script, "pip install ."], script)


def test_the_container_health_check_asks_what_pid_1_runs() -> None:
    s = Settings.from_env({**DSN, "COUNTER_BIND": "0.0.0.0:8080"})
    gunicorn = ["/opt/counter/venv/bin/python", "/opt/counter/venv/bin/gunicorn", "-c", "x"]
    assert probe_url(gunicorn, s) == "http://127.0.0.1:8080/healthz"
    assert probe_url(["/venv/bin/counter-flusher"], s) == "http://127.0.0.1:9108/metrics"
    assert probe_url(["counterctl", "migrate"], s) is None
