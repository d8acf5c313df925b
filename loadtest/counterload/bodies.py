"""What a well-formed response looks like (DESIGN.md section 2), as pure functions.

Success (200): ``{"data": {"namespace": ns, "value": n}, "metadata": {"timestamp": t}}``.
Every error, 4xx or 5xx: ``{"error": code, "message": text, "metadata": {"timestamp": t}}``.
Both are ``application/json`` and ``t`` is an ISO 8601 time with a zone. A body that
differs (an HTML 502 from a proxy, a missing ``metadata``, a value as a string) is
something a client coded against the contract would choke on, so it fails the run.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

JSON = "application/json"


def success_problem(content_type: str, content: bytes, namespace: str) -> tuple[int, str]:
    """``(value, "")`` for a well-formed success body of ``namespace``, else ``(-1, why)``."""
    body, why = _json_object(content_type, content)
    if body is None:
        return -1, why
    data = body.get("data")
    if not isinstance(data, dict) or not {"namespace", "value"} <= data.keys():
        return -1, "no data {namespace, value}"
    if data["namespace"] != namespace:
        return -1, f"data.namespace {data['namespace']!r}, not {namespace!r}"
    value = data["value"]
    if type(value) is not int or value < 0:
        return -1, f"data.value {value!r} is not a whole number >= 0"
    why = _metadata_problem(body)
    return (-1, why) if why else (value, "")


def error_problem(content_type: str, content: bytes) -> str:
    """Why an error body lacks the one JSON error shape ("" when it has it)."""
    body, why = _json_object(content_type, content)
    if body is None:
        return why
    for name in ("error", "message"):
        if not isinstance(body.get(name), str) or not body[name]:
            return f"no {name!r} string"
    return _metadata_problem(body)


def _json_object(content_type: str, content: bytes) -> tuple[dict[str, Any] | None, str]:
    if content_type.split(";")[0].strip().lower() != JSON:
        return None, f"Content-Type {content_type!r}, not {JSON}"
    try:
        body = json.loads(content)
    except (ValueError, TypeError):
        return None, "not JSON"
    if not isinstance(body, dict):
        return None, "not a JSON object"
    return body, ""


def _metadata_problem(body: dict[str, Any]) -> str:
    metadata = body.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("timestamp"), str):
        return "no metadata.timestamp"
    try:
        zoned = datetime.fromisoformat(metadata["timestamp"]).tzinfo is not None
    except ValueError:
        zoned = False
    if not zoned:
        return f"metadata.timestamp {metadata['timestamp']!r} is not ISO 8601 with a zone"
    return ""
