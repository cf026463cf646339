-- The follower's side of v -> a being active. KEYS: v's following, celebrity followees, Home cache.
-- ARGV: a, 1 if a is a celebrity, cap, then a's posts (member, score, ...). A celebrity is pulled
-- at read; anyone else's posts are backfilled into v's cache if it exists. Returns posts added.
local following, celebs, feed = KEYS[1], KEYS[2], KEYS[3]
local a, cap = ARGV[1], tonumber(ARGV[3])
redis.call('SADD', following, a)
if ARGV[2] == '1' then
  redis.call('SADD', celebs, a)
  return 0
end
if #ARGV < 5 or redis.call('EXISTS', feed) == 0 then return 0 end
local added = 0
for i = 4, #ARGV, 1000 do  -- GT: a post already there keeps its score (its creation time)
  local args = {}
  for j = i, math.min(i + 999, #ARGV), 2 do
    args[#args + 1] = ARGV[j + 1]
    args[#args + 1] = ARGV[j]
  end
  added = added + redis.call('ZADD', feed, 'GT', unpack(args))
end
trim(feed, cap)
return added
