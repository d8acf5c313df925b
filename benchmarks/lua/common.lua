-- Shared by spread.lua and hot.lua (loaded with dofile from BENCH_LUA_DIR).
-- Requests are built once per wrk thread in init(), so wrk spends no time
-- formatting them under load. Environment:
--   BENCH_API_KEY   value of the requiems-api-key header (may be empty for baselines)
--   BENCH_METHOD    POST (increment, default) or GET (read)
--   BENCH_PREFIX    URL prefix, default /v1/misc/counter/
-- done() prints one line "BENCH_JSON {...}" that benchmarks/wrk.py parses.
local M = {}

function M.build(names)
  local headers = {
    ["requiems-api-key"] = os.getenv("BENCH_API_KEY") or "",
    ["Content-Length"] = "0",
  }
  local method = os.getenv("BENCH_METHOD") or "POST"
  local prefix = os.getenv("BENCH_PREFIX") or "/v1/misc/counter/"
  local reqs = {}
  for i, name in ipairs(names) do
    reqs[i] = wrk.format(method, prefix .. name, headers)
  end
  return reqs
end

function M.done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p99.9":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max))
end

return M
