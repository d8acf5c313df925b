"""The counter service: one package per process over a small shared core.

- core (the modules here): settings, key names and the bucket hash (``keys``), the
  Lua script registry (``scripts`` + ``lua/``), domain errors, logs, migrations,
  API keys, redis-py client construction. Imports nothing else of ``service``.
- ``api``: the HTTP service run by gunicorn (app, resources, auth, store, metrics).
- ``fastpath``: the API's Redis transport and its waits in meinheld's event loop.
- ``flusher``: ``counter-flusher``, the write-behind loop to PostgreSQL.
- ``ops``: ``counterctl``, the operator's commands.
- ``wsgi.py`` and ``gunicorn_conf.py``: the API's entry points, which wire it all.

Import rules (checked by ``tests/unit/test_import_rules.py``): api → core, fastpath;
fastpath → core; flusher → core; ops → core, flusher. Only the API knows HTTP.
"""
