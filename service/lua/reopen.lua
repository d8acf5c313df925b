-- Repair: start a new lineage on a bucket whose Redis values are behind PostgreSQL
-- within one lineage (an operator's edit, data restored from an old snapshot), so
-- the flusher settles it: adds what PostgreSQL holds beyond today's values.
-- KEYS[1] = bucket lineage       c:{b}:l
-- KEYS[2] = bucket values hash   c:{b}:v
-- KEYS[3] = bucket base hash     c:{b}:b
-- KEYS[4] = bucket dirty zset    c:{b}:d
-- ARGV[1] = now, ms; ARGV[2..] = members found behind: marked dirty, so that the
--           flusher comes back to the bucket and settles it
-- returns 1 when a lineage was opened, 0 when one is open already (it will be
-- settled) or the bucket holds nothing.
local lineage = redis.call('GET', KEYS[1])
if (lineage and string.sub(lineage, -2) == ':o') or redis.call('EXISTS', KEYS[2]) == 0 then
  return 0
end
local replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')
local t = redis.call('TIME')
redis.call('DEL', KEYS[3])
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 1000 do
  redis.call('HSET', KEYS[3], unpack(all, i, math.min(i + 999, #all)))
end
redis.call('SET', KEYS[1], replid .. ':' .. t[1] .. string.format('%06d', tonumber(t[2])) .. ':o')
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[4], 'NX', ARGV[1], ARGV[i])
end
return 1
