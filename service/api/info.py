"""``GET /v1/{misc,technology}/counter/{namespace}/info``: a counter's state in both stores.

``value`` is what a GET answers (Redis, else PostgreSQL, else 0). ``created_at`` is
when its row was first flushed (null before); ``updated_at`` the last change known:
the time of its oldest unflushed change when one is pending (``pending_since``), else
the last flush. ``stored`` is PostgreSQL's row: its value, epoch and ``flushed_at``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import falcon
import orjson

from service import keys
from service.api.clock import utc_timestamp
from service.api.redis_access import RedisUnavailable
from service.api.store import UNAVAILABLE, CounterStore
from service.errors import BackendUnavailable
from service.scripts import INFO


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def counter_info(store: CounterStore, tenant: str, namespace: str) -> dict[str, Any]:
    field = keys.member(tenant, namespace)
    bucket = keys.bucket_of_member(field, store.n_buckets)
    try:
        raw, epoch, dirty_ms = store.redis.run(INFO, bucket, field)
    except RedisUnavailable as exc:
        store.outage_failed(exc)
        raise BackendUnavailable("redis", UNAVAILABLE) from None
    row = store.db.read_info(bucket, tenant, namespace)
    stored = None
    if row is not None:
        stored = {"value": int(row[1]), "epoch": int(row[0]), "flushed_at": _iso(row[3])}
    pending = None
    if dirty_ms is not None:
        pending = datetime.fromtimestamp(float(dirty_ms) / 1000, UTC)
    value = int(raw) if raw is not None else (stored["value"] if stored else 0)
    return {
        "namespace": namespace,
        "value": value,
        "epoch": int(epoch) if raw is not None else (stored["epoch"] if stored else 0),
        "created_at": _iso(row[2]) if row is not None else None,
        "updated_at": _iso(pending) if pending else (_iso(row[3]) if row is not None else None),
        "pending_since": _iso(pending),
        "stored": stored,
    }


def render_info(resp: falcon.Response, info: dict[str, Any]) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.data = orjson.dumps({"data": info, "metadata": {"timestamp": utc_timestamp()}})
