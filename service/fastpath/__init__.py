"""The API's hot-path transport: a lean RESP client, auto-pipelining, meinheld's loop.

``resp`` and ``lean_redis`` speak to Redis (one node or a cluster); ``pipeline``
shares one connection per node among a worker's requests; ``coop`` describes the
event loop's hooks, which the composition root passes in; ``pg_coop`` lets
PostgreSQL waits yield to the loop too. May import the core only: nothing here
knows counters or HTTP.
"""
