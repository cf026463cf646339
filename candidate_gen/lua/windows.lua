-- Newest-first windows of many sorted sets in one call (the request path's fan-in reads), in
-- groups that share a score window and a count.
-- KEYS: the sorted sets, group after group. ARGV: per group, how many keys, max, min, count.
-- Returns one [member, score, member, score, ...] per key, in KEYS' order.
local out, k = {}, 1
for g = 1, #ARGV, 4 do
  local n, max, min, count = tonumber(ARGV[g]), ARGV[g + 1], ARGV[g + 2], ARGV[g + 3]
  for _ = 1, n do
    out[k] = redis.call('ZREVRANGEBYSCORE', KEYS[k], max, min, 'WITHSCORES', 'LIMIT', 0, count)
    k = k + 1
  end
end
return out
