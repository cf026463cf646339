-- The author's side of v unfollowing a (or withdrawing a request). KEYS: a's followers, pending,
-- posts. ARGV: v, 1 to return a's post members (for v's cache). Returns {1 if an active edge ended
-- now else 0, posts}: the follower's side is applied either way, so a replayed batch repairs it.
local followers, pending, posts = KEYS[1], KEYS[2], KEYS[3]
local v = ARGV[1]
redis.call('SREM', pending, v)
local ended = redis.call('SREM', followers, v)
if ARGV[2] ~= '1' then return {ended, {}} end
return {ended, redis.call('ZRANGE', posts, 0, -1)}
