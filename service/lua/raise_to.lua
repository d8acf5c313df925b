-- Repair: raise counters to their PostgreSQL state where Redis holds less (a Redis
-- failover or restart lost acknowledged increments). Never lowers anything.
-- KEYS[1] = bucket values hash   c:{b}:v
-- KEYS[2] = bucket epochs hash   c:{b}:e
-- KEYS[3] = bucket dirty zset    c:{b}:d
-- ARGV    = member, epoch, value, member, epoch, value, ... as stored in PostgreSQL
-- returns one entry per member: the Redis value before the raise, or "" when
-- nothing was done (counter missing: the next increment hydrates it; or Redis
-- already >= PostgreSQL). A raised counter equals PostgreSQL, so its mark is removed.
-- Values are compared as decimal strings: exact beyond 2^53, where Lua numbers are not.
local function less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local out = {}
for i = 1, #ARGV, 3 do
  local member, pg_epoch, pg_value = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local value = redis.call('HGET', KEYS[1], member)
  local epoch = tonumber(redis.call('HGET', KEYS[2], member) or '0')
  if value and (epoch < pg_epoch or (epoch == pg_epoch and less(value, pg_value))) then
    redis.call('HSET', KEYS[1], member, pg_value)
    if pg_epoch > 0 then
      redis.call('HSET', KEYS[2], member, ARGV[i + 1])
    end
    redis.call('ZREM', KEYS[3], member)
    out[#out + 1] = value
  else
    out[#out + 1] = ''
  end
end
return out
