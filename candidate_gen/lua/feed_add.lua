-- One post into the Home caches in KEYS (followers of its author that share a slot; on one server,
-- all of them), each only if it exists: a cache exists only when complete. ARGV: creation ms, post
-- member, cap. Returns how many caches gained the post.
local score, m, cap = ARGV[1], ARGV[2], tonumber(ARGV[3])
local added = 0
for _, feed in ipairs(KEYS) do
  if redis.call('EXISTS', feed) == 1 then
    added = added + redis.call('ZADD', feed, score, m)
    trim(feed, cap)
  end
end
return added
