-- Rate limit of one API key (GCRA): decide, and record the request only if it is allowed.
-- KEYS[1] = the key's limit state   rl:{id}   (string: theoretical arrival time, µs)
-- ARGV[1] = emission interval, µs per request (1,000,000 / rate; at least 1)
-- ARGV[2] = burst: requests allowed at once
-- returns {allowed (1 or 0), remaining now, retry after (ms; 0 when allowed),
--          reset (ms until a full burst is available again)}
-- The clock is Redis's TIME, not the caller's, so every worker of every host judges by
-- one clock. A refused request writes nothing. The state expires when the bucket is
-- full again, so an idle key costs no memory.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval -- the earliest time this request fits
if allow_at > now then
  return {0, 0, math.ceil((allow_at - now) / 1000), math.ceil((tat - now) / 1000)}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((now - allow_at) / interval), 0, math.ceil((new_tat - now) / 1000)}
