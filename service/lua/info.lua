#!lua flags=no-writes
-- What Redis knows of one counter, read atomically (GET …/{ns}/info).
-- KEYS[1] = bucket values hash   c:{b}:v
-- KEYS[2] = bucket dirty zset    c:{b}:d
-- KEYS[3] = bucket epochs hash   c:{b}:e
-- ARGV[1] = member "<tenant>/<namespace>"
-- returns {value or false, epoch, first-dirty time in ms or false}
return {
  redis.call('HGET', KEYS[1], ARGV[1]) or false,
  tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0'),
  redis.call('ZSCORE', KEYS[2], ARGV[1]) or false,
}
