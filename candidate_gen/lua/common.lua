-- Shared by the graph and feed scripts (prepended to each). Every key a script touches is passed
-- in KEYS, and all of one script's keys share one account's hash tag: on Redis Cluster each call
-- runs in one slot (docs/feed_cache_format.md).

-- Keep the build sentinel (+inf) and the newest `cap` posts of a Home feed cache.
local function trim(feed, cap)
  local n = redis.call('ZCARD', feed)
  if n > cap + 1 then redis.call('ZREMRANGEBYRANK', feed, 0, n - cap - 2) end
end

-- The author's side of an edge becoming active: v follows; a pending request is settled. Returns
-- the author's recent posts (member, score, ...) when the follower's cache needs them.
local function activate(followers, pending, posts, v, with_posts)
  redis.call('SADD', followers, v)
  redis.call('SREM', pending, v)
  if with_posts == '1' then return redis.call('ZRANGE', posts, 0, -1, 'WITHSCORES') end
  return {}
end
