-- Workload "batch": POST /v1/misc/counters with BENCH_BATCH items (default 100), each a
-- namespace drawn from BENCH_NAMESPACES (default 1000) and by = 1. A few hundred bodies
-- are built once per thread in init(), so wrk spends no time formatting them.
local common = dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")
local reqs = {}

function init(args)
  local n = tonumber(os.getenv("BENCH_NAMESPACES") or "1000")
  local size = tonumber(os.getenv("BENCH_BATCH") or "100")
  local addr = tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0
  math.randomseed(os.time() + addr % 1000003)
  for r = 1, 256 do
    local items = {}
    for i = 1, size do
      items[i] = '{"namespace":"ns-' .. math.random(0, n - 1) .. '","by":1}'
    end
    local body = '{"increments":[' .. table.concat(items, ",") .. ']}'
    reqs[r] = wrk.format("POST", "/v1/misc/counters", {
      ["requiems-api-key"] = os.getenv("BENCH_API_KEY") or "",
      ["Content-Type"] = "application/json",
    }, body)
  end
end

function request()
  return reqs[math.random(#reqs)]
end

done = common.done
