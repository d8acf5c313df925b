-- Workload "hot": every request hits one namespace ("hot"), the worst case for
-- contention: one Redis hash field (one cluster node), one PostgreSQL row.
local common = dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")
local req

function init(args)
  req = common.build({"hot"})[1]
end

function request()
  return req
end

done = common.done
