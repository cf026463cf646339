-- ARGV: prefix, viewer v, cap, ttl seconds, oldest creation ms kept. (Re)builds v's Home feed
-- cache from the recent posts of the non-celebrity authors v follows, server-side. Returns the
-- number of posts in it.
local v, cap, ttl, oldest = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local feed = P .. 'feed:' .. v
redis.call('DEL', feed)
redis.call('ZADD', feed, 'inf', '~built')
local sources = {}
for _, a in ipairs(redis.call('SMEMBERS', P .. 'following:' .. v)) do
  if redis.call('SISMEMBER', P .. 'celebs', a) == 0 then
    sources[#sources + 1] = P .. 'posts:' .. a
    if #sources == 500 then union_into(feed, sources, cap); sources = {} end
  end
end
union_into(feed, sources, cap)
redis.call('ZREMRANGEBYSCORE', feed, '-inf', '(' .. oldest)
redis.call('EXPIRE', feed, ttl)
return redis.call('ZCARD', feed) - 1
