"""The containers of Kubernetes manifests that run the project's image."""

from __future__ import annotations

from typing import Any

from .dockerfile import Image
from .workload import Workload

POD_PATHS = {  # where each workload kind keeps its pod spec
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


def _dig(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        doc = (doc or {}).get(key) or {}
    return doc


def workloads(
    docs: list[dict[str, Any]], image: Image, image_name: str
) -> tuple[list[Workload], list[str]]:
    """One Workload per container of the project's image, and the problems found on the way."""
    data: dict[tuple[str, str], dict[str, str]] = {}
    for doc in docs:
        if doc.get("kind") in ("ConfigMap", "Secret"):
            values = {**(doc.get("data") or {}), **(doc.get("stringData") or {})}
            data[(doc["kind"], doc["metadata"]["name"])] = {k: str(v) for k, v in values.items()}
    found: list[Workload] = []
    problems: list[str] = []
    for doc in docs:
        path = POD_PATHS.get(str(doc.get("kind")))
        if path is None:
            continue
        pod = _dig(doc, path)
        meta = _dig(doc, path[:-1] + ("metadata",))
        origin = f"{doc['kind']} {doc['metadata']['name']}"
        for container in pod.get("containers") or []:
            if str(container.get("image", "")).split(":")[0].rsplit("/", 1)[-1] != image_name:
                continue
            where = f"{origin} container {container['name']}"
            w = Workload(origin=where, command=list(image.cmd))
            if container.get("command"):
                w.command = [*container["command"], *(container.get("args") or [])]
            w.env = {k: v for k, v in image.env.items() if k.startswith("COUNTER_")}
            _env(container, data, w, problems)
            named = {
                p["name"]: int(p["containerPort"])
                for p in container.get("ports") or []
                if "name" in p
            }
            w.ports = {int(p["containerPort"]) for p in container.get("ports") or []}
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                handler = container.get(probe) or {}
                for kind in ("httpGet", "tcpSocket", "grpc"):
                    if kind in handler:
                        w.probe_ports.add(_port(handler[kind]["port"], named, where, problems))
            annotated = (meta.get("annotations") or {}).get("prometheus.io/port")
            if annotated:
                w.probe_ports.add(int(annotated))
            w.stop_grace = float(pod.get("terminationGracePeriodSeconds", 30))
            w.pre_stop = _pre_stop_seconds(container)
            found.append(w)
    return found, problems


def _env(
    container: dict[str, Any],
    data: dict[tuple[str, str], dict[str, str]],
    w: Workload,
    problems: list[str],
) -> None:
    for source in container.get("envFrom") or []:
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if key in source:
                name = source[key]["name"]
                if (kind, name) not in data:
                    problems.append(f"{w.origin}: envFrom {kind} {name!r} is not in the manifests")
                w.env.update(data.get((kind, name), {}))
    for var in container.get("env") or []:
        if "value" in var:
            w.env[var["name"]] = str(var["value"])
        else:
            w.unresolved.add(var["name"])
    w.env = {k: v for k, v in w.env.items() if k.startswith("COUNTER_")}
    w.unresolved = {k for k in w.unresolved if k.startswith("COUNTER_")}


def _port(port: int | str, named: dict[str, int], where: str, problems: list[str]) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    if port not in named:
        problems.append(f"{where}: a probe uses port name {port!r}, which no port declares")
        return 0
    return named[port]


def _pre_stop_seconds(container: dict[str, Any]) -> float:
    """Seconds the preStop hook waits: ``sleep N`` or the native sleep action."""
    hook = _dig(container, ("lifecycle", "preStop"))
    if "sleep" in hook:
        return float(hook["sleep"].get("seconds", 0))
    command = _dig(hook, ("exec",)).get("command") or []
    if command and command[0].rsplit("/", 1)[-1] == "sleep" and len(command) == 2:
        return float(command[1])
    return 0.0


def service_problems(docs: list[dict[str, Any]]) -> list[str]:
    """A Service whose selector matches no pod template, or whose targetPort no container has."""
    pods = [
        (
            _dig(d, POD_PATHS[d["kind"]][:-1] + ("metadata",)).get("labels") or {},
            _dig(d, POD_PATHS[d["kind"]]),
        )
        for d in docs
        if d.get("kind") in POD_PATHS
    ]
    problems = []
    for svc in (d for d in docs if d.get("kind") == "Service"):
        name, selector = svc["metadata"]["name"], svc["spec"].get("selector") or {}
        matched = [pod for labels, pod in pods if selector.items() <= labels.items()]
        if not matched:
            problems.append(f"Service {name}: selector {selector} matches no pod template")
        for port in svc["spec"].get("ports") or []:
            target = port.get("targetPort", port["port"])
            for pod in matched:
                declared = [p for c in pod.get("containers") or [] for p in c.get("ports") or []]
                if not any(target in (p.get("name"), p["containerPort"]) for p in declared):
                    problems.append(f"Service {name}: targetPort {target!r} is no container port")
    return problems
