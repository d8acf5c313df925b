"""Container health check for whichever process of the counter service the image runs.

One image runs the API, the flusher and one-shot ``counterctl`` commands, so the
check reads PID 1's command line to know what should answer: the API's ``/healthz``
on ``COUNTER_BIND``'s port, or the flusher's metrics on ``COUNTER_FLUSHER_METRICS_PORT``.
Anything else (a ``counterctl`` one-shot) is healthy while it runs. Ports and their
defaults come from ``Settings.from_env()``, the same as the process itself reads.
Exit 0 = healthy, 1 = not.
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

from service.settings import Settings, SettingsError


def probe_url(argv: list[str], settings: Settings) -> str | None:
    """The URL that answers 200 while the process in ``argv`` is healthy, if any."""
    names = {Path(arg).name for arg in argv[:2]}  # "python /venv/bin/gunicorn …" too
    host, _, port = settings.bind.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1" if host != "::" else "::1"
    if ":" in host:
        host = f"[{host}]"
    if "gunicorn" in names:
        return f"http://{host}:{port}/healthz"
    if "counter-flusher" in names and settings.flusher_metrics_port:
        return f"http://{host}:{settings.flusher_metrics_port}/metrics"
    return None


def main() -> int:
    argv = Path("/proc/1/cmdline").read_bytes().decode(errors="replace").split("\0")
    try:
        url = probe_url(argv, Settings.from_env())
    except SettingsError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 1
    if url is None:
        return 0
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return 0 if resp.status == 200 else 1
    except OSError as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
