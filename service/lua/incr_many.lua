#!lua flags=allow-cross-slot-keys
-- Increment many counters of many buckets held by one node, each marked dirty, in
-- one call: the batch endpoint's one round trip per node (incr.lua item by item).
-- KEYS[1] = bucket values hash   c:{b}:v   of the first bucket: routes the call to
--           its node. Redis Cluster refuses declared keys of several slots, so the
--           buckets' key names (built by service/keys.py) come in ARGV.
-- ARGV[1] = now, ms since the epoch (score of a new dirty mark)
-- ARGV[2] = time to live of idempotency records, ms
-- ARGV[3] = "apply", or "check": only look for idempotency conflicts, change nothing
-- ARGV[4] = the request's fingerprint, "" without an idempotency key
-- ARGV[5] = "1" when every item carries a seed (the call after hydration), else "0"
-- ARGV[6..] = per bucket: its keys v, d, l (as in incr.lua), then n, the number of its
--             items, then n times: member, by, [seed, seed epoch: with ARGV[5] = "1"],
--             [idempotency record key (in the bucket's slot): with a fingerprint].
--             Its keys e and b (used only where a lineage opens or a seed is written)
--             are named from v: a bucket's keys are c:{b}:<suffix> (service/keys.py).
-- ARGV[#ARGV] = the replication id of the node the caller addressed (incr.lua)
-- returns one value per item in order (in "check" mode 0s), -1 for a counter that
-- is missing and has no seed (nothing done for it: the caller hydrates it and sends
-- it again). An item whose record exists returns the value recorded (nothing done);
-- a record of another request is the error "IDEMCONFLICT" before any write.
-- Errors before any count: a bucket whose slot this node does not serve, or serves
-- while it migrates (Redis refuses the first command that touches a key it lacks), or
-- "STALETOKEN <replid>" as in incr.lua. The caller then sends the items one by one
-- through incr.lua, which follows redirections. Every key a count writes is touched in
-- phase 1 (the lineage GET, HEXISTS on v; EXISTS of all five keys where a lineage opens
-- or a seed may be written; GET of each record), so such an error comes before any
-- HINCRBY. The only writes that may precede it are dirty marks (ZADD NX) of counters
-- that exist: a mark is always safe, the flusher writes the state the counter holds
-- (the guarded upsert makes that a no-op if PostgreSQL has it) and clears the mark.
-- Lineage: as in incr.lua (keep the two in step), per bucket.
-- PERF: an item is 2 ARGVs without a seed or a key (6 before), a bucket 4 (6 while e
-- and b were sent for the rare slow path: 3.84 -> 3.60 µs of Redis CPU per increment;
-- naming d and l from v too cost more than it saved; redis.call held in a local and a
-- count for out's length: 3.54-3.64 -> 3.48-3.54 µs). A batch of 100 items over
-- 4,096 buckets has ~1 item per bucket, so per-bucket calls cost as much as per-item
-- ones (~0.7 µs each): one HMGET and one ZADD per bucket instead of an HEXISTS and a
-- ZADD per item cost more. Buckets are read where their ARGVs are (K, F, L), not copied
-- into a table each: 5.1-5.2 -> 4.7-4.8 µs of script per item. Marking in phase 1,
-- with HEXISTS as v's touch, drops the per-bucket EXISTS of five keys: four calls for
-- a bucket of one item, not five (docs/performance.md, 2026-12-03 and 2026-12-04).
-- Per bucket n: K[n] = ARGV index of its keys v, d, l (K[n] .. K[n] + 2);
-- F[n], L[n] = ARGV indexes of its first and last item.
local call = redis.call -- PERF: one local, not two table lookups per call
local token = ARGV[#ARGV]
local fingerprint, seeded = ARGV[4], ARGV[5] == '1'
local R = 3 + (seeded and 2 or 0) -- offset of an item's record key
local S = R - 1 + (fingerprint ~= '' and 1 or 0) -- ARGVs per item
local K, F, L, i = {}, {}, {}, 6
while i < #ARGV do
  local n, items = #K + 1, tonumber(ARGV[i + 3])
  K[n], F[n], L[n] = i, i + 4, i + 4 + S * (items - 1)
  i = i + 4 + S * items
end
local function slow_keys(v) -- a bucket's keys e and b, named from its key v
  local tag = string.sub(v, 1, -2)
  return tag .. 'e', tag .. 'b'
end
-- Phase 1: every check, then the dirty marks; no count before the last check.
local open, stale, mine = {}, false, token .. ':' -- a lineage of this node starts so
for n = 1, #K do
  local lineage = call('GET', ARGV[K[n] + 2])
  if not lineage or string.sub(lineage, 1, #mine) ~= mine then
    open[n], stale = true, true
  end
end
local recorded = {} -- ARGV index of an item -> its recorded value
if fingerprint ~= '' then
  for n = 1, #K do
    for j = F[n], L[n], S do
      local record = call('GET', ARGV[j + R - 1])
      if record then
        local nl = string.find(record, '\n', 1, true)
        if string.sub(record, 1, nl - 1) ~= fingerprint then
          return redis.error_reply('IDEMCONFLICT')
        end
        recorded[j] = tonumber(string.sub(record, nl + 1))
      end
    end
  end
end
if ARGV[3] == 'check' then
  local zeros = {}
  for n = 1, #K do
    for _ = F[n], L[n], S do zeros[#zeros + 1] = 0 end
  end
  return zeros
end
if stale then
  local replid = string.match(call('INFO', 'replication'), 'master_replid:(%x+)')
  if replid ~= token then
    return redis.error_reply('STALETOKEN ' .. tostring(replid))
  end
end
-- A bucket whose lineage opens here, or a call with seeds (rare: after a failover, a
-- hydration), touches all its keys and takes the slow path in phase 2. Otherwise each
-- item not answered by its record is looked up (touching v) and, if it exists, marked.
local marked = {} -- ARGV index of an item -> true: it exists and is marked dirty
for n = 1, #K do
  local k = K[n]
  if open[n] or seeded then
    local e, b = slow_keys(ARGV[k])
    call('EXISTS', ARGV[k], ARGV[k + 1], e, ARGV[k + 2], b)
  else
    local v, d = ARGV[k], ARGV[k + 1]
    for j = F[n], L[n], S do
      if not recorded[j] and call('HEXISTS', v, ARGV[j]) == 1 then
        call('ZADD', d, 'NX', ARGV[1], ARGV[j])
        marked[j] = true
      end
    end
  end
end
-- Phase 2: start the lineages this node's history lacks, then count.
local out, o = {}, 0
for n = 1, #K do
  local k = K[n]
  local v, d = ARGV[k], ARGV[k + 1]
  local slow = open[n] or seeded
  local e, b
  if slow then
    e, b = slow_keys(v)
  end
  if open[n] then
    local l = ARGV[k + 2]
    local t = call('TIME')
    local id = token .. ':' .. t[1] .. string.format('%06d', tonumber(t[2]))
    call('DEL', b)
    if call('EXISTS', v) == 1 then
      local all = call('HGETALL', v)
      for j = 1, #all, 1000 do
        call('HSET', b, unpack(all, j, math.min(j + 999, #all)))
      end
      call('SET', l, id .. ':o')
    else
      call('SET', l, id .. ':s')
    end
  end
  for j = F[n], L[n], S do
    local member = ARGV[j]
    local value, counted = recorded[j] or -1, false
    if recorded[j] then -- applied before: answered from its record
    elseif marked[j] then
      value, counted = call('HINCRBY', v, member, ARGV[j + 1]), true
    elseif slow and (seeded or call('HEXISTS', v, member) == 1) then
      if seeded and call('HEXISTS', v, member) == 0 then -- hydrate
        call('HSET', v, member, ARGV[j + 2])
        if tonumber(ARGV[j + 3]) > 0 then
          call('HSET', e, member, ARGV[j + 3])
        end
      end
      value, counted = call('HINCRBY', v, member, ARGV[j + 1]), true
      call('ZADD', d, 'NX', ARGV[1], member)
    end
    if counted and fingerprint ~= '' then
      call('SET', ARGV[j + R - 1], fingerprint .. '\n' .. value, 'PX', ARGV[2])
    end
    o = o + 1
    out[o] = value
  end
end
return out
