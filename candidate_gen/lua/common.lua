-- Shared by the graph scripts (prepended to each). P is the key prefix; keys are built here from
-- ids because a follow touches keys of two users (standalone Redis/Valkey; see the format doc).
local P = ARGV[1]

-- Keep the build sentinel (+inf) and the newest `cap` posts of a Home feed cache.
local function trim(feed, cap)
  local n = redis.call('ZCARD', feed)
  if n > cap + 1 then redis.call('ZREMRANGEBYRANK', feed, 0, n - cap - 2) end
end

-- ZUNIONSTORE replaces the destination and with it its TTL: put the TTL back.
local function union_into(feed, sources, cap)
  if #sources == 0 then return end
  local ttl = redis.call('PTTL', feed)
  -- MAX, not the default SUM: a post already in the feed keeps its creation time as score.
  local args = {feed, #sources + 1, feed}
  for _, s in ipairs(sources) do args[#args + 1] = s end
  args[#args + 1] = 'AGGREGATE'
  args[#args + 1] = 'MAX'
  redis.call('ZUNIONSTORE', unpack(args))
  if ttl > 0 then redis.call('PEXPIRE', feed, ttl) end
  trim(feed, cap)
end

-- The edge v -> a becomes active: graph sets, then the author's recent posts reach v's feed cache
-- (a backfill; only caches that exist are written) or, for a celebrity, v pulls them at read.
local function activate(v, a, cap)
  redis.call('SADD', P .. 'followers:' .. a, v)
  redis.call('SADD', P .. 'following:' .. v, a)
  redis.call('SREM', P .. 'pending:' .. a, v)
  if redis.call('SISMEMBER', P .. 'celebs', a) == 1 then
    redis.call('SADD', P .. 'celebfollowees:' .. v, a)
  else
    local feed = P .. 'feed:' .. v
    if redis.call('EXISTS', feed) == 1 then union_into(feed, {P .. 'posts:' .. a}, cap) end
  end
end
