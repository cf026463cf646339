-- ARGV: prefix, author a, post member, creation ms, cap. Fans one post out to the existing Home
-- caches of a's followers, inside the server: one call per post instead of one client command per
-- follower (the client-side loop costs ~10 us of Python per write). Returns {followers, added}.
local a, m, score, cap = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local followers = redis.call('SMEMBERS', P .. 'followers:' .. a)
local added = 0
for _, v in ipairs(followers) do
  local feed = P .. 'feed:' .. v
  if redis.call('EXISTS', feed) == 1 then
    added = added + redis.call('ZADD', feed, score, m)
    trim(feed, cap)
  end
end
return {#followers, added}
