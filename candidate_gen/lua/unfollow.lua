-- ARGV: prefix, follower v, followee a. Ends the edge or the pending request; the author's posts
-- leave v's feed cache. Returns 1 when an active edge ended, 0 otherwise.
local v, a = ARGV[2], ARGV[3]
redis.call('SREM', P .. 'pending:' .. a, v)
if redis.call('SREM', P .. 'followers:' .. a, v) == 0 then return 0 end
redis.call('SREM', P .. 'following:' .. v, a)
redis.call('SREM', P .. 'celebfollowees:' .. v, a)
local feed = P .. 'feed:' .. v
if redis.call('EXISTS', feed) == 1 then
  local posts = redis.call('ZRANGE', P .. 'posts:' .. a, 0, -1)
  for i = 1, #posts, 500 do
    redis.call('ZREM', feed, unpack(posts, i, math.min(i + 499, #posts)))
  end
end
return 1
