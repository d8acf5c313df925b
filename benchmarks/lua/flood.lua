-- Workload "flood": every request carries a distinct made-up API key of the right shape
-- (ck_ + 43 URL-safe characters), the costliest garbage: it passes the format check and
-- is hashed and looked up. Every answer is a 401.
local common = dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")
local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local prefix

function init(args)
  prefix = os.getenv("BENCH_PREFIX") or "/v1/misc/counter/"
  local addr = tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0
  math.randomseed(os.time() + addr % 1000003)
end

function request()
  local key = {}
  for i = 1, 43 do
    local r = math.random(64)
    key[i] = chars:sub(r, r)
  end
  return wrk.format("POST", prefix .. "flood", {
    ["requiems-api-key"] = "ck_" .. table.concat(key),
    ["Content-Length"] = "0",
  })
end

done = common.done
