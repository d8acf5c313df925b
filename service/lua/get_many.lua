#!lua flags=allow-cross-slot-keys,no-writes
-- Read many counters of many buckets held by one node in one call (GET /counters).
-- KEYS[1] = bucket values hash   c:{b}:v   of the first bucket (routes the call);
--           the others come in ARGV, as in incr_many.lua.
-- ARGV[1..] = values hash, member; values hash, member; ...
-- returns one value per pair, false (nil) where Redis does not hold the counter.
local out = {}
for i = 1, #ARGV, 2 do
  out[#out + 1] = redis.call('HGET', ARGV[i], ARGV[i + 1]) or false
end
return out
