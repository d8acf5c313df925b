-- Increment a counter and mark it dirty, atomically, in one bucket (one slot).
-- KEYS[1] = bucket values hash   c:{b}:v   (member -> value)
-- KEYS[2] = bucket dirty zset    c:{b}:d   (member -> first-dirty time, ms)
-- KEYS[3] = bucket epochs hash   c:{b}:e   (member -> epoch, only when > 0)
-- KEYS[4] = bucket lineage       c:{b}:l   ("<replid>:<start µs>:<o|s>")
-- KEYS[5] = bucket base hash     c:{b}:b   (member -> value when the lineage began)
-- KEYS[6], only with an Idempotency-Key: its record, a string in the bucket's slot
--           (service/keys.py idempotency_record; not a bucket key: passed after them)
-- ARGV[1] = member "<tenant>/<namespace>"
-- ARGV[2] = now, ms since the epoch (score of a new dirty mark)
-- ARGV[3] = seed value from PostgreSQL, or "" when the caller has not hydrated
-- ARGV[4] = seed epoch from PostgreSQL (used with ARGV[3])
-- ARGV[5] = by: the amount to add (1 ≤ by ≤ 1,000,000,000, checked by the caller)
-- ARGV[6] = the request's fingerprint (used with KEYS[6])
-- ARGV[7] = the record's time to live, ms (used with KEYS[6])
-- ARGV[8] = the replication id (master_replid) of the node the caller addressed
-- returns the new value, or -1 when the counter is missing and no seed was
-- given: the caller reads PostgreSQL and calls again with the seed. A seed is
-- applied only if the counter is still missing, so racing hydrations are safe.
-- With KEYS[6]: a record of the same request returns its stored value (nothing done);
-- of another request the error "IDEMCONFLICT" (nothing done); none: the increment is
-- applied and recorded, "<fingerprint>\n<value>", in this same atomic call.
-- Returns the error "STALETOKEN <replid>" (nothing done) when ARGV[8] is not this
-- node's: the caller learns the node's id and sends again.
--
-- Lineage (see docs/durability.md): a bucket's data carries the id of the node
-- history it was counted in. A node with another replication id (a promoted replica,
-- a restart) starts a new lineage: its values may lack acknowledged increments that
-- PostgreSQL holds, so each counter's value now is kept as its base, and the flusher
-- later adds what PostgreSQL holds beyond the base (settle.lua) before it flushes.
local token = ARGV[8]
local lineage = redis.call('GET', KEYS[4])
if not lineage or string.sub(lineage, 1, #token + 1) ~= token .. ':' then
  local replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')
  if replid ~= token then
    return redis.error_reply('STALETOKEN ' .. tostring(replid))
  end
  local t = redis.call('TIME')
  local id = token .. ':' .. t[1] .. string.format('%06d', tonumber(t[2]))
  redis.call('DEL', KEYS[5])
  if redis.call('EXISTS', KEYS[1]) == 1 then -- a history from elsewhere: open
    local all = redis.call('HGETALL', KEYS[1])
    for i = 1, #all, 1000 do -- unpack() is limited by the Lua stack: pairs in slices
      redis.call('HSET', KEYS[5], unpack(all, i, math.min(i + 999, #all)))
    end
    redis.call('SET', KEYS[4], id .. ':o')
  else -- a bucket new to this node: every counter comes from PostgreSQL
    redis.call('SET', KEYS[4], id .. ':s')
  end
end
if KEYS[6] then
  local record = redis.call('GET', KEYS[6])
  if record then
    local nl = string.find(record, '\n', 1, true)
    if string.sub(record, 1, nl - 1) ~= ARGV[6] then
      return redis.error_reply('IDEMCONFLICT')
    end
    return tonumber(string.sub(record, nl + 1))
  end
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  if ARGV[3] == '' then
    return -1
  end
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  if tonumber(ARGV[4]) > 0 then
    redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
  end
end
local value = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[5])
redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
if KEYS[6] then
  redis.call('SET', KEYS[6], ARGV[6] .. '\n' .. value, 'PX', ARGV[7])
end
return value
