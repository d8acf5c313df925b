"""The processes of a Compose file that run the project's image."""

from __future__ import annotations

import re
import shlex
from typing import Any

from .dockerfile import Image
from .workload import Workload

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_]\w*)")


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with every variable unset: the file's own defaults."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return m.group(3) if m.group(2) in (":-", "-") else ""

    return _VAR.sub(sub, value)


def duration(raw: str | int | float) -> float:
    """Compose durations: ``30s``, ``1m30s``, ``500ms``, or a number of seconds."""
    if isinstance(raw, int | float):
        return float(raw)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", raw)
    return sum(float(n) * units[u] for n, u in parts)


def runs_project_image(service: dict[str, Any], image_name: str) -> bool:
    build = service.get("build")
    if isinstance(build, dict) and str(build.get("dockerfile", "")).endswith("Dockerfile"):
        return build.get("target") in (None, "app")
    return str(service.get("image", "")).split(":")[0] == image_name


def workloads(
    doc: dict[str, Any],
    origin: str,
    image: Image,
    image_name: str,
    scrape_ports: dict[str, set[int]],
) -> list[Workload]:
    """One Workload per service running the project's image (by build or image name).

    ``scrape_ports`` maps a service name to the ports Prometheus scrapes on it."""
    found = []
    for name, service in (doc.get("services") or {}).items():
        if not runs_project_image(service, image_name):
            continue
        command = service.get("command")
        if isinstance(command, str):
            command = shlex.split(command)
        env = dict(image.env)
        env.update(_environment(service.get("environment")))
        grace = service.get("stop_grace_period")
        found.append(
            Workload(
                origin=f"{origin}: service {name}",
                command=[interpolate(str(a)) for a in command] if command else list(image.cmd),
                env={k: v for k, v in env.items() if k.startswith("COUNTER_")},
                ports=set(image.expose) | _ports(service),
                probe_ports=scrape_ports.get(name, set()),
                stop_grace=duration(grace) if grace is not None else 10.0,  # compose default
            )
        )
    return found


def _environment(raw: Any) -> dict[str, str]:
    if isinstance(raw, list):
        pairs = (str(item).split("=", 1) for item in raw)
        return {p[0]: interpolate(p[1]) if len(p) > 1 else "" for p in pairs}
    return {str(k): interpolate("" if v is None else str(v)) for k, v in (raw or {}).items()}


def _ports(service: dict[str, Any]) -> set[int]:
    ports = {int(str(p).split("/")[0]) for p in service.get("expose") or []}
    for spec in service.get("ports") or []:
        if isinstance(spec, dict):
            ports.add(int(spec["target"]))
        else:
            ports.add(int(interpolate(str(spec)).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def prometheus_ports(config: dict[str, Any]) -> dict[str, set[int]]:
    """Service name → ports scraped, from a Prometheus config's static and DNS targets."""
    ports: dict[str, set[int]] = {}
    for job in config.get("scrape_configs") or []:
        for sd in job.get("dns_sd_configs") or []:
            for name in sd.get("names") or []:
                ports.setdefault(name, set()).add(int(sd["port"]))
        for static in job.get("static_configs") or []:
            for target in static.get("targets") or []:
                host, _, port = str(target).rpartition(":")
                ports.setdefault(host, set()).add(int(port))
    return ports
