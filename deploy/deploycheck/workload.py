"""One process a deployment file starts, in a form every check can read."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Workload:
    """A process as a deployment file describes it.

    ``env`` holds the ``COUNTER_*`` variables it gets (image defaults included);
    ``unresolved`` names variables whose value the file does not give (``valueFrom``).
    ``ports`` are the container ports it declares, ``probe_ports`` the ports its
    health checks and scrape annotations use. ``stop_grace`` is the seconds it gets
    between SIGTERM (after ``pre_stop``) and SIGKILL, when the file sets it.
    """

    origin: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    unresolved: set[str] = field(default_factory=set)
    ports: set[int] = field(default_factory=set)
    probe_ports: set[int] = field(default_factory=set)
    stop_grace: float | None = None
    pre_stop: float = 0.0

    @property
    def program(self) -> str:
        """The command's program name, without its directory."""
        return self.command[0].rsplit("/", 1)[-1] if self.command else ""
