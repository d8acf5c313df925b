"""``counterctl``: the operator's commands (migrate, API keys, flush, verify).

``cli`` parses arguments; ``commands`` prints the flush and verify results;
``verify`` compares Redis with PostgreSQL. May import the core and ``service.flusher``.
"""
