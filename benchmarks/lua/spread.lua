-- Workload "spread": requests spread uniformly at random over BENCH_NAMESPACES
-- namespaces (default 1000: ns-0 .. ns-999), the common case of many counters.
local common = dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")
local reqs

function init(args)
  local n = tonumber(os.getenv("BENCH_NAMESPACES") or "1000")
  local names = {}
  for i = 1, n do names[i] = "ns-" .. (i - 1) end
  reqs = common.build(names)
  -- each wrk thread has its own Lua state: seed each one differently
  local addr = tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0
  math.randomseed(os.time() + addr % 1000003)
end

function request()
  return reqs[math.random(#reqs)]
end

done = common.done
