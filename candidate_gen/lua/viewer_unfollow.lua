-- The follower's side of v -> a not being active. KEYS: v's following, celebrity followees, Home
-- cache. ARGV: a, then a's post members, which leave v's cache. Returns 0.
local following, celebs, feed = KEYS[1], KEYS[2], KEYS[3]
redis.call('SREM', following, ARGV[1])
redis.call('SREM', celebs, ARGV[1])
if #ARGV > 1 and redis.call('EXISTS', feed) == 1 then
  for i = 2, #ARGV, 500 do
    redis.call('ZREM', feed, unpack(ARGV, i, math.min(i + 499, #ARGV)))
  end
end
return 0
