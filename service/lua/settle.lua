-- Settle an open lineage: add to each counter what PostgreSQL holds beyond the
-- value it had when the lineage began, then close the lineage. Adds, never
-- overwrites: increments acknowledged since the lineage began are kept.
-- KEYS[1] = bucket lineage       c:{b}:l
-- KEYS[2] = bucket values hash   c:{b}:v
-- KEYS[3] = bucket base hash     c:{b}:b
-- KEYS[4] = bucket dirty zset    c:{b}:d
-- KEYS[5] = bucket epochs hash   c:{b}:e
-- ARGV[1] = the lineage id that was settled in PostgreSQL ("<replid>:<start µs>")
-- ARGV[2] = now, ms (score of the dirty mark of a counter that was raised)
-- ARGV[3..] = member, epoch, new epoch, amount; member, ... : where PostgreSQL holds
--             (new epoch, value) beyond the counter's (epoch, base), amount = value -
--             base (below 0 only with a newer epoch: a set or reset Redis lost).
--             Applied only if the counter's epoch is still ``epoch``.
-- returns {counters raised, increments added}, or {-1, 0} when the bucket's
-- lineage is no longer ARGV[1] open (settled already, or replaced): nothing done.
-- Idempotent: a second call finds the lineage settled.
if redis.call('GET', KEYS[1]) ~= ARGV[1] .. ':o' then
  return {-1, 0}
end
local raised, added = 0, 0
for i = 3, #ARGV, 4 do
  local member, epoch, new_epoch = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('HEXISTS', KEYS[2], member) == 1
      and (redis.call('HGET', KEYS[5], member) or '0') == epoch then
    redis.call('HINCRBY', KEYS[2], member, ARGV[i + 3])
    if new_epoch ~= epoch then
      redis.call('HSET', KEYS[5], member, new_epoch)
    end
    redis.call('ZADD', KEYS[4], 'NX', ARGV[2], member)
    raised = raised + 1
    added = added + tonumber(ARGV[i + 3])
  end
end
redis.call('DEL', KEYS[3])
redis.call('SET', KEYS[1], ARGV[1] .. ':s')
return {raised, added}
