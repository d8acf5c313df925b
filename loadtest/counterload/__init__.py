"""Shared parts of the counter service's Locust scenarios.

Importable as ``counterload`` from a locustfile in ``loadtest/`` (Locust puts the
locustfile's directory on ``sys.path``), and as ``loadtest.counterload`` from the tests.

  users.py       CounterUser: increment/read that tally outcomes and check bodies
  bodies.py      the success envelope and the one JSON error shape, as pure checks
  lifecycle.py   event listeners: options, start values, collecting tallies, verdict
  tally.py       per-counter attempts/acks/values, merged across workers
  invariants.py  the pure checks (distinct values, final range, reads, durability)
  thresholds.py  error ratio and latency percentiles
  endcheck.py    the end-of-run sequence; durable.py its PostgreSQL side
  api.py         plain GETs for start/final values; report.py the summary
  options.py     command-line options and LOADTEST_* variables; zipf.py a sampler
"""
