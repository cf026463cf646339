-- The author's side of v following a. KEYS: a's followers, pending, private flag, posts.
-- ARGV: v, 1 to return a's posts (a is not a celebrity). Returns {state, posts}: state 1 active
-- now, 0 already active (posts returned too, so a replayed batch repairs the follower's side),
-- 2 pending (a is private).
local followers, pending, private, posts = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local v, with_posts = ARGV[1], ARGV[2]
if redis.call('SISMEMBER', followers, v) == 1 then
  return {0, activate(followers, pending, posts, v, with_posts)}
end
if redis.call('EXISTS', private) == 1 then
  redis.call('SADD', pending, v)
  return {2, {}}
end
return {1, activate(followers, pending, posts, v, with_posts)}
