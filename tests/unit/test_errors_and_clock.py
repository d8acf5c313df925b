"""Error bodies share one shape; timestamps are RFC 3339 UTC seconds."""

import re
import time
from datetime import UTC

import orjson

from service.api.clock import utc_timestamp
from service.api.errors import error_body


def test_error_body_has_code_message_and_timestamp() -> None:
    body = orjson.loads(error_body(503, "down"))
    assert body["error"] == "unavailable" and body["message"] == "down"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["metadata"]["timestamp"])


def test_unknown_statuses_map_by_class() -> None:
    assert orjson.loads(error_body(418, "x"))["error"] == "bad_request"
    assert orjson.loads(error_body(502, "x"))["error"] == "internal_error"


def test_the_cached_timestamp_is_the_current_utc_second() -> None:
    from datetime import datetime

    before = int(time.time())
    stamp = datetime.strptime(utc_timestamp(), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= stamp.timestamp() <= time.time()
