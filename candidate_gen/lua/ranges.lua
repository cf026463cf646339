-- Many ZREVRANGEBYSCORE reads in one call: the same score window and count for every key.
-- KEYS: sorted sets. ARGV: max, min, count. Returns one [member, score, member, score, ...] per key.
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('ZREVRANGEBYSCORE', key, ARGV[1], ARGV[2], 'WITHSCORES', 'LIMIT', 0, ARGV[3])
end
return out
