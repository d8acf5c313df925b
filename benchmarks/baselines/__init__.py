"""Baselines for the benchmark: NOT the product.

Each module is a deliberately naive Falcon app served by the same gunicorn +
meinheld stack as the service, so the report can say how the service compares
with its ceiling (fixed JSON) and with the obvious alternatives (one INCR, one
PostgreSQL upsert per request). No auth, no validation, no durability story.
Configuration comes from ``BENCH_*`` environment variables.
"""
