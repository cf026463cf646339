-- The author's side of a approving v's request. KEYS: a's followers, pending, posts. ARGV: v, 1 to
-- return a's posts. Returns {state, posts}: 1 activated, 3 already active (no request; posts
-- returned so a replay repairs the follower's side), 0 neither (no request, not a follower).
local followers, pending, posts = KEYS[1], KEYS[2], KEYS[3]
local v, with_posts = ARGV[1], ARGV[2]
if redis.call('SISMEMBER', pending, v) == 1 then
  return {1, activate(followers, pending, posts, v, with_posts)}
end
if redis.call('SISMEMBER', followers, v) == 1 then
  return {3, activate(followers, pending, posts, v, with_posts)}
end
return {0, {}}
