-- Read a window of a bucket's dirty marks, with their counters' epochs and values,
-- atomically (a value is never paired with another state's epoch), as COPY text.
-- KEYS[1] = bucket dirty zset    c:{b}:d   (member -> first-dirty time, ms)
-- KEYS[2] = bucket values hash   c:{b}:v   (member -> value)
-- KEYS[3] = bucket epochs hash   c:{b}:e   (member -> epoch, only when > 0)
-- KEYS[4] = bucket lineage       c:{b}:l   ("<replid>:<start µs>:<o|s>")
-- ARGV[1] = first rank of the window (0 = oldest mark)
-- ARGV[2] = last rank of the window, inclusive
-- ARGV[3] = the bucket number (first column of every row)
-- returns {rows, read, gone, invalid, lineage}:
--   rows    = one line per counter, "<bucket>\t<tenant>\t<namespace>\t<epoch>\t<value>\n",
--             ready for COPY … FROM STDIN (text format) and for clear_dirty.lua;
--   read    = marks in the window;
--   gone    = marks dropped because their counter is gone from Redis: there is
--             nothing to flush, and the next increment hydrates it from PostgreSQL;
--   invalid = marks dropped because the member is not "<tenant>/<namespace>" of
--             [A-Za-z0-9_-]: incr.lua never writes one, it can never be flushed,
--             and so COPY text needs no escaping. The caller logs them;
--   lineage = the bucket's lineage, read with the rows ("" when it has none yet).
-- PERF: the rows are built here so that the flusher handles no counter one by one.
local members = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2])
local rows, gone, invalid = {}, 0, 0
local step = 1000 -- unpack() is limited by the Lua stack: read in slices
for i = 1, #members, step do
  local last = math.min(i + step - 1, #members)
  local values = redis.call('HMGET', KEYS[2], unpack(members, i, last))
  local epochs = redis.call('HMGET', KEYS[3], unpack(members, i, last))
  for j = 1, last - i + 1 do
    local member = members[i + j - 1]
    local tenant, namespace = string.match(member, '^([%w_%-]+)/([%w_%-]+)$')
    if not values[j] then
      gone = gone + redis.call('ZREM', KEYS[1], member)
    elseif not tenant then
      invalid = invalid + redis.call('ZREM', KEYS[1], member)
    else
      rows[#rows + 1] = ARGV[3] .. '\t' .. tenant .. '\t' .. namespace .. '\t'
        .. (epochs[j] or '0') .. '\t' .. values[j] .. '\n'
    end
  end
end
return {table.concat(rows), #members, gone, invalid, redis.call('GET', KEYS[4]) or ''}
