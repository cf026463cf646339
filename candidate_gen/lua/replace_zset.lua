-- KEYS[1]: a sorted set. ARGV: ttl seconds, then score, member pairs. Replaces the whole set in one
-- step (readers never see it half-written) and sets its TTL. Returns the number of members.
redis.call('DEL', KEYS[1])
local n = #ARGV
if n < 3 then return 0 end
for i = 2, n, 2000 do  -- an even chunk keeps (score, member) pairs together
  redis.call('ZADD', KEYS[1], unpack(ARGV, i, math.min(i + 1999, n)))
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return (n - 1) / 2
