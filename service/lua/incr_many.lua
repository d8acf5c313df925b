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
-- ZADD per item cost more. Buckets are read where their ARGVs are (K, L), not copied
-- into a table each: 5.1-5.2 -> 4.7-4.8 µs of script per item. Marking in phase 1,
-- with HEXISTS as v's touch, drops the per-bucket EXISTS of five keys: four calls for
-- a bucket of one item, not five (docs/performance.md, 2026-12-03 and 2026-12-04).
-- The buckets are indexed and their lineages read in one loop, a mark is noted in the
-- item's slot of the reply (out) rather than in a table keyed by ARGV index, the
-- common bucket has a phase-2 loop of its own, and a lineage is compared by find, not
-- a substring: 2.97-3.75 -> 2.66-3.26 µs of script per item, same rounds
-- (`python -m benchmarks.script_cost new.lua old.lua`).
local call, find = redis.call, string.find
local A = ARGV
local last = #A
local token, now, ttl = A[last], A[1], A[2]
local fingerprint, seeded = A[4], A[5] == '1'
local keyed = fingerprint ~= ''
local R = 3 + (seeded and 2 or 0) -- offset of an item's record key
local S = R - 1 + (keyed and 1 or 0) -- ARGVs per item
local function slow_keys(v) -- a bucket's keys e and b, named from its key v
  local tag = string.sub(v, 1, -2)
  return tag .. 'e', tag .. 'b'
end
-- Phase 1: every check, then the dirty marks; no count before the last check.
-- Per bucket n: K[n] = ARGV index of its keys v, d, l (K[n] .. K[n] + 2), its items
-- from K[n] + 4 to L[n]; open[n] when its lineage is not one this node started.
local K, L, open, nb, items, stale, i = {}, {}, {}, 0, 0, false, 6
local mine = token .. ':' -- a lineage of this node starts so
while i < last do
  local n = tonumber(A[i + 3])
  local after = i + 4 + S * n
  nb, items = nb + 1, items + n
  K[nb], L[nb] = i, after - S
  local lineage = call('GET', A[i + 2])
  if not lineage or find(lineage, mine, 1, true) ~= 1 then
    open[nb], stale = true, true
  end
  i = after
end
local recorded = {} -- ARGV index of an item -> its recorded value
if keyed then
  for n = 1, nb do
    for j = K[n] + 4, L[n], S do
      local record = call('GET', A[j + R - 1])
      if record then
        local nl = find(record, '\n', 1, true)
        if string.sub(record, 1, nl - 1) ~= fingerprint then
          return redis.error_reply('IDEMCONFLICT')
        end
        recorded[j] = tonumber(string.sub(record, nl + 1))
      end
    end
  end
end
if A[3] == 'check' then
  local zeros = {}
  for o = 1, items do zeros[o] = 0 end
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
-- item not answered by its record is looked up (touching v) and, if it exists, marked:
-- out[o] = true for the o-th item (false otherwise) until phase 2 puts its value there.
local out, o = {}, 0
for n = 1, nb do
  local k = K[n]
  if open[n] or seeded then
    local e, b = slow_keys(A[k])
    call('EXISTS', A[k], A[k + 1], e, A[k + 2], b)
    for _ = k + 4, L[n], S do
      o = o + 1
      out[o] = false
    end
  else
    local v, d = A[k], A[k + 1]
    for j = k + 4, L[n], S do
      o = o + 1
      if (not keyed or not recorded[j]) and call('HEXISTS', v, A[j]) == 1 then
        call('ZADD', d, 'NX', now, A[j])
        out[o] = true
      else
        out[o] = false
      end
    end
  end
end
-- Phase 2: start the lineages this node's history lacks, then count.
o = 0
for n = 1, nb do
  local k = K[n]
  local v = A[k]
  if open[n] or seeded then
    local d, e, b = A[k + 1], slow_keys(v)
    if open[n] then
      local t = call('TIME')
      local id = token .. ':' .. t[1] .. string.format('%06d', tonumber(t[2]))
      call('DEL', b)
      if call('EXISTS', v) == 1 then
        local all = call('HGETALL', v)
        for j = 1, #all, 1000 do
          call('HSET', b, unpack(all, j, math.min(j + 999, #all)))
        end
        call('SET', A[k + 2], id .. ':o')
      else
        call('SET', A[k + 2], id .. ':s')
      end
    end
    for j = k + 4, L[n], S do
      local member, value = A[j], recorded[j] or -1
      if not recorded[j] and (seeded or call('HEXISTS', v, member) == 1) then
        if seeded and call('HEXISTS', v, member) == 0 then -- hydrate
          call('HSET', v, member, A[j + 2])
          if tonumber(A[j + 3]) > 0 then
            call('HSET', e, member, A[j + 3])
          end
        end
        value = call('HINCRBY', v, member, A[j + 1])
        call('ZADD', d, 'NX', now, member)
        if keyed then
          call('SET', A[j + R - 1], fingerprint .. '\n' .. value, 'PX', ttl)
        end
      end
      o = o + 1
      out[o] = value
    end
  else
    for j = k + 4, L[n], S do
      o = o + 1
      if out[o] then
        local value = call('HINCRBY', v, A[j], A[j + 1])
        out[o] = value
        if keyed then
          call('SET', A[j + R - 1], fingerprint .. '\n' .. value, 'PX', ttl)
        end
      else
        out[o] = recorded[j] or -1
      end
    end
  end
end
return out
