"""The HTTP API, one process per gunicorn worker: ``create_app`` and what it wires.

Resources parse, validate and translate; ``store`` counts; ``auth`` maps keys to
grants (tenant, scope, limit) from ``keyset``, the keys a worker holds in memory;
``ratelimit`` decides a limited key's requests; ``pg`` is the API's PostgreSQL adapter
(reads only); ``errors`` turns domain errors into the one JSON error shape. May import
the core and ``service.fastpath``.
"""
