-- An account created or updated. KEYS: u's private flag, pending, followers, accepted, posts.
-- ARGV: is_private (0/1), 1 to return u's posts. Going private keeps the approved followers; going
-- public accepts the pending requests (as Instagram does). The accepted requesters are kept in
-- `accepted` until their side of the edge is written (the worker deletes it after), so a replayed
-- batch finds them again. Returns {accepted requesters, posts}.
local flag, pending, followers, accepted, posts = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
if ARGV[1] == '1' then
  redis.call('SET', flag, '1')
  return {{}, {}}
end
if redis.call('DEL', flag) == 1 and redis.call('EXISTS', pending) == 1 then
  for _, v in ipairs(redis.call('SMEMBERS', pending)) do redis.call('SADD', followers, v) end
  redis.call('SUNIONSTORE', accepted, accepted, pending)
  redis.call('DEL', pending)
end
local who = redis.call('SMEMBERS', accepted)
if #who == 0 or ARGV[2] ~= '1' then return {who, {}} end
return {who, redis.call('ZRANGE', posts, 0, -1, 'WITHSCORES')}
