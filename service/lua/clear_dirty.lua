-- After a commit to PostgreSQL, clear the dirty marks of counters that still hold
-- exactly the state that was flushed. A counter changed since it was read keeps
-- its mark, so its newer state is flushed next time; the mark's score moves up to
-- the time of the read (never down): every increment older than that is in
-- PostgreSQL now, so flush lag stays true for a counter that is never idle, and
-- the next window of the bucket reads the marks not read yet, not this one again.
-- KEYS[1] = bucket dirty zset    c:{b}:d
-- KEYS[2] = bucket values hash   c:{b}:v
-- KEYS[3] = bucket epochs hash   c:{b}:e
-- KEYS[4] = bucket lineage       c:{b}:l
-- ARGV[1] = the rows snapshot.lua returned for this bucket, as flushed:
--           "<bucket>\t<tenant>\t<namespace>\t<epoch>\t<value>\n" per counter
-- ARGV[2] = when the rows were read, ms since the epoch
-- returns the number of marks removed. Idempotent: safe to run again.
-- A bucket whose lineage is open keeps every mark: they bring it back to the
-- flusher, which settles it (settle.lua) before anything of it is written.
local lineage = redis.call('GET', KEYS[4])
if lineage and string.sub(lineage, -2) == ':o' then
  return 0
end
local cleared = 0
-- PERF: most buckets have no epochs hash at all (every epoch 0): skip one HGET per member.
local has_epochs = redis.call('EXISTS', KEYS[3]) == 1
for tenant, namespace, epoch, value in
    string.gmatch(ARGV[1], '%d+\t([^\t\n]+)\t([^\t\n]+)\t(%d+)\t(%d+)\n') do
  local member = tenant .. '/' .. namespace
  local now_epoch = has_epochs and redis.call('HGET', KEYS[3], member) or '0'
  if now_epoch == epoch and redis.call('HGET', KEYS[2], member) == value then
    cleared = cleared + redis.call('ZREM', KEYS[1], member)
  else
    redis.call('ZADD', KEYS[1], 'XX', 'GT', ARGV[2], member)
  end
end
return cleared
