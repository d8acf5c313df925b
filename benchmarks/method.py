"""How the numbers in a report were measured: the text every report ends with."""

METHOD = """\
- **Throughput** is closed loop: `wrk -t{threads} -c{connections} -d{duration}s` with
  `lua/spread.lua` (POSTs, or GETs, spread at random over {namespaces:,} namespaces) or
  `lua/hot.lua` (every POST on one namespace). "ok req/s" counts 2xx responses only. The sweep
  is interleaved: for each worker count ({workers}) every configuration is started at once, warmed
  up for {warmup} s, then measured in {rounds} rounds of one point each (order rotated every
  round), so the points a ratio compares were taken seconds apart; the median of the rounds is
  kept. "best" is a configuration's highest median, "equal" is {equal} workers for all.
- **Latency** is open loop, measured by `benchmarks/openloop.py`, our own generator: wrk2 is
  not packaged for Debian and cannot be fetched here, and Locust's constant-throughput users
  are closed loop. Request i is due at `t0 + i/rate` (25/50/75% of that configuration's best
  throughput) whatever the server does; it goes out on one of {connections} keep-alive
  connections or waits in a queue when all are busy, so queueing is never hidden (no
  coordinated omission). Latency is timed from the scheduler's dispatch (it includes the queue
  wait, and excludes the event loop's ~1 ms timer granularity); "p99 from intended" adds the
  scheduler's own lateness too (the wrk2 convention). The generator is Python (uvloop), so it
  needs CPU: its share is shown, and a point whose scheduler fell behind (p99 dispatch lag
  over 5 ms) is marked *generator-bound* and not trusted; one where more than 1% of requests
  found every connection busy is marked *saturated*. "connections per worker" is how the kernel
  spread the generator's keep-alive connections over the gunicorn workers (the service's
  master steers each to a random worker's listener, so the spread is a coin toss per
  connection; the baselines' go to whoever wins the accept race); at a fixed offered load the
  worker holding the most connections saturates first, which wrk's closed loop hides.
  Each point runs in {latency_rounds} round(s) of {latency_duration:g} s (a round offers every
  load once); the table shows the round with the median p99, every round's p99 beside it, and
  that round judges the latency goal.
- **CPU split**: psutil CPU times of each process tree (gunicorn master + workers; Redis
  nodes; postmaster + backends; flusher) before and after each window; the load generator by
  `RUSAGE_CHILDREN`; "irq" is interrupt time (mostly loopback networking, which belongs to no
  process); "other" is whatever else the machine did (other users). In cores: 1.0 = one
  core busy for the whole window; the machine has {cpus}.
- **Flush lag**: during a max-load wrk run against the service, a sampler sends increments on
  10 namespaces of its own every 20 ms and records (value, time of the 200); a poller reads
  those rows from PostgreSQL every 10 ms and records when a value >= the acknowledged one appears.
- **Redis memory**: INFO `used_memory` summed over the 3 masters before and after creating
  {memory_counters:,} counters with the service's `incr.lua` (same keys, same bucket hash;
  `EVALSHA` pipelined per node, not HTTP), and again after the flusher cleared the dirty marks
  when a flusher ran. The full profile also creates 10,000,000 counters the same way on a
  throwaway 3-master cluster (no flusher: "after flush" deletes the dirty-mark zsets, as a
  completed flush would), bounded in time; a partial fill is labelled and judges no goal.
- **Baselines are not the product**: `baselines/ceiling.py` (fixed JSON: the most any Falcon
  app does here), `baselines/naive_incr.py` (one redis-py INCR per request, no auth, no
  validation, nothing durable), `baselines/naive_pg.py` (one committed PostgreSQL upsert per
  request). They run under the same gunicorn + meinheld, against the same servers.
- **The Go peer** (`baselines/go_peer/main.go`, not the product either) is what users would pick
  instead (Abacus is Go + Redis): net/http + redigo, one `INCR` per POST (`GET` per read) on a
  standalone Redis node of its own, no auth, no dirty mark, nothing durable; built offline in
  GOPATH mode from Debian's `golang-go` and `golang-github-gomodule-redigo-dev`. It is one
  process: its "workers" are `GOMAXPROCS`, swept like everyone's worker count, so it too is
  compared at its best.
"""
