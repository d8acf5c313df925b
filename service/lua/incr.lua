-- Increment a counter and mark it dirty, atomically, in one bucket (one slot).
-- KEYS[1] = bucket values hash   c:{b}:v   (member -> value)
-- KEYS[2] = bucket dirty zset    c:{b}:d   (member -> first-dirty time, ms)
-- KEYS[3] = bucket epochs hash   c:{b}:e   (member -> epoch, only when > 0)
-- ARGV[1] = member "<tenant>/<namespace>"
-- ARGV[2] = now, ms since the epoch (score of a new dirty mark)
-- ARGV[3] = seed value from PostgreSQL, or "" when the caller has not hydrated
-- ARGV[4] = seed epoch from PostgreSQL (used with ARGV[3])
-- returns the new value, or -1 when the counter is missing and no seed was
-- given: the caller reads PostgreSQL and calls again with the seed. A seed is
-- applied only if the counter is still missing, so racing hydrations are safe.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  if ARGV[3] == '' then
    return -1
  end
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  if tonumber(ARGV[4]) > 0 then
    redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
  end
end
local value = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
return value
