-- A viewer's Home cache built anew from its non-celebrity followees' recent posts, which the
-- caller read (they live in the followees' slots). KEYS: the cache. ARGV: cap, ttl seconds, then
-- score, member pairs. Writes the build sentinel and the newest `cap` posts (trimmed as fan-out
-- trims) and the TTL. Returns the number of posts in it.
local feed, cap = KEYS[1], tonumber(ARGV[1])
redis.call('DEL', feed)
redis.call('ZADD', feed, 'inf', '~built')
for i = 3, #ARGV, 2000 do  -- i odd, chunks of 2000 keep (score, member) pairs together
  redis.call('ZADD', feed, unpack(ARGV, i, math.min(i + 1999, #ARGV)))
end
trim(feed, cap)
redis.call('EXPIRE', feed, ARGV[2])
return redis.call('ZCARD', feed) - 1
