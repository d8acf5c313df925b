"""``counter-flusher``: the write-behind loop from Redis to PostgreSQL (DESIGN §5).

``loop`` runs passes with backoff and signals; ``flusher`` is one pass, batch by
batch; ``plan`` cuts partitions into batches; ``redis_side`` and ``pg_side`` are its
own Redis and PostgreSQL access; ``repair`` raises Redis where PostgreSQL is ahead.
May import the core only (not the API's transport).
"""
