"""``python -m deploy.deploycheck``: check every deployment file; exit 1 on a problem."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

from . import compose, dockerfile, k8s, project, rules, systemd
from .workload import Workload

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
IMAGE_NAME = "counter-service"
API_DOCS = ("service.gunicorn_conf", "service.wsgi")  # modules whose docstring gives the command
# The image leaves these to the deployment; stand-ins let its defaults be checked alone.
IMAGE_STANDINS = {"COUNTER_PG_DSN": "postgresql://db/counter", "COUNTER_REDIS_URL": "redis://r"}


def load_workloads(image: dockerfile.Image) -> tuple[list[Workload], list[str]]:
    compose_doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    scraped = compose.prometheus_ports(
        yaml.safe_load((DEPLOY / "compose/prometheus.yml").read_text())
    )
    k8s_docs = [
        doc
        for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    default = Workload(
        "deploy/Dockerfile: default command",
        list(image.cmd),
        {k: v for k, v in {**IMAGE_STANDINS, **image.env}.items() if k.startswith("COUNTER_")},
        ports=set(image.expose),
    )
    k8s_workloads, problems = k8s.workloads(k8s_docs, image, IMAGE_NAME)
    problems += k8s.service_problems(k8s_docs)
    problems += [
        f"k8s {w.origin}: the API has no preStop wait, so load balancers may still "
        "route to it after SIGTERM"
        for w in k8s_workloads
        if w.program == rules.API and w.pre_stop <= 0
    ]
    for w in k8s_workloads:
        w.origin = f"k8s {w.origin}"
    return [
        default,
        *compose.workloads(compose_doc, "compose.yaml", image, IMAGE_NAME, scraped),
        *k8s_workloads,
        *systemd.workloads(DEPLOY / "systemd", DEPLOY / "systemd/counter.env.example"),
    ], problems


def check_workload(
    w: Workload, known: set[str], scripts: set[str], api_command: list[str]
) -> list[str]:
    problems = rules.variable_problems(w, known)
    problems += rules.command_problems(
        w, scripts, api_command, project.module_exists, project.cli_accepts
    )
    problems += rules.settings_problems(w, project.parse_settings)
    if problems or w.unresolved:
        return problems
    problems += rules.port_problems(w, project.parse_settings(w.env))
    if w.program == rules.API:
        config = w.command[w.command.index("-c") + 1].removeprefix("python:")
        problems += rules.grace_problems(w, project.graceful_timeout(config, w.env))
    return problems


def kustomization_problems() -> list[str]:
    listed = set(yaml.safe_load((DEPLOY / "k8s/kustomization.yaml").read_text())["resources"])
    present = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    return [
        f"k8s/kustomization.yaml: {name} is "
        f"{'listed but missing' if name in listed else 'not listed'}"
        for name in sorted(listed ^ present)
    ]


def build_problems(docker_text: str) -> list[str]:
    """The image builds meinheld with the script the Makefile uses, after the project."""
    make = (REPO / "Makefile").read_text()
    script = re.search(r"\$\(PY\) (\S*build_meinheld\.py)", make)
    if script is None:
        return ["Makefile: no `$(PY) …build_meinheld.py` step found to compare the image with"]
    if dockerfile.runs_script_after_install(dockerfile.all_runs(docker_text), script.group(1)):
        return []
    return [
        f"deploy/Dockerfile: does not run {script.group(1)} after `pip install .` "
        "as the Makefile does"
    ]


def dashboard_warnings() -> list[str]:
    text = json.dumps(
        json.loads((DEPLOY / "compose/grafana/dashboards/counter-service.json").read_text())
    )
    used = {re.sub(r"_(bucket|count|sum)$", "", m) for m in re.findall(r"counter_[a-z_]+", text)}
    missing = used - project.defined_metrics(REPO / "service")
    return [
        f"dashboard: metric {name} is not defined in service/ (yet)" for name in sorted(missing)
    ]


def main() -> int:
    docker_text = (DEPLOY / "Dockerfile").read_text()
    image = dockerfile.final_image(docker_text)
    known = rules.known_variables(project.module_source("service.settings"))
    scripts = project.installed_scripts(REPO / "pyproject.toml")
    api_command = next(
        filter(None, (rules.documented_api_command(project.module_source(m)) for m in API_DOCS)),
        [],
    )
    workloads, problems = load_workloads(image)
    if not api_command:
        problems.append(f"none of {', '.join(API_DOCS)} documents the gunicorn command")
    for w in workloads:
        problems += check_workload(w, known, scripts, api_command)
    problems += kustomization_problems() + build_problems(docker_text)
    for warning in dashboard_warnings():
        print(f"deploy-check: warning: {warning}")
    for problem in problems:
        print(f"deploy-check: {problem}", file=sys.stderr)
    print(
        f"deploy-check: {len(workloads)} processes (image, compose, k8s, systemd) against "
        f"{len(known)} COUNTER_* variables: {len(problems)} problems"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
