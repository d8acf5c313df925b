-- Set a counter to a value (PUT; DELETE and reset set 0), raising its epoch, atomically.
-- KEYS[1] = bucket values hash   c:{b}:v   (member -> value)
-- KEYS[2] = bucket dirty zset    c:{b}:d   (member -> first-dirty time, ms)
-- KEYS[3] = bucket epochs hash   c:{b}:e   (member -> epoch, only when > 0)
-- KEYS[4] = bucket lineage       c:{b}:l   (as in incr.lua)
-- KEYS[5] = bucket base hash     c:{b}:b   (as in incr.lua)
-- KEYS[6], only with an Idempotency-Key: its record (as in incr.lua)
-- ARGV[1] = member "<tenant>/<namespace>"
-- ARGV[2] = now, ms since the epoch (score of a new dirty mark)
-- ARGV[3] = the counter's epoch in PostgreSQL, read by the caller just before
-- ARGV[4] = the new value
-- ARGV[5] = the request's fingerprint (used with KEYS[6])
-- ARGV[6] = the record's time to live, ms (used with KEYS[6])
-- ARGV[7] = the replication id of the node the caller addressed (incr.lua)
-- returns the new value. The epoch becomes one more than the larger of Redis's and
-- PostgreSQL's, so (epoch, value) still only grows (DESIGN §4): the flusher's guard
-- writes it over any older state, hydration reads it back, and settling an open
-- lineage skips the counter (its epoch changed) instead of adding to the new value.
-- Errors and idempotency records: as in incr.lua.
local token = ARGV[7]
local lineage = redis.call('GET', KEYS[4])
if not lineage or string.sub(lineage, 1, #token + 1) ~= token .. ':' then
  -- A history from elsewhere: as in incr.lua (keep the two in step).
  local replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')
  if replid ~= token then
    return redis.error_reply('STALETOKEN ' .. tostring(replid))
  end
  local t = redis.call('TIME')
  local id = token .. ':' .. t[1] .. string.format('%06d', tonumber(t[2]))
  redis.call('DEL', KEYS[5])
  if redis.call('EXISTS', KEYS[1]) == 1 then
    local all = redis.call('HGETALL', KEYS[1])
    for i = 1, #all, 1000 do
      redis.call('HSET', KEYS[5], unpack(all, i, math.min(i + 999, #all)))
    end
    redis.call('SET', KEYS[4], id .. ':o')
  else
    redis.call('SET', KEYS[4], id .. ':s')
  end
end
if KEYS[6] then
  local record = redis.call('GET', KEYS[6])
  if record then
    local nl = string.find(record, '\n', 1, true)
    if string.sub(record, 1, nl - 1) ~= ARGV[5] then
      return redis.error_reply('IDEMCONFLICT')
    end
    return tonumber(string.sub(record, nl + 1))
  end
end
local epoch = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
epoch = math.max(epoch, tonumber(ARGV[3])) + 1
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[3], ARGV[1], epoch)
redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
if KEYS[6] then
  redis.call('SET', KEYS[6], ARGV[5] .. '\n' .. ARGV[4], 'PX', ARGV[6])
end
return tonumber(ARGV[4])
