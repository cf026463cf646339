-- ARGV: prefix, follower v, followee a, cap. Returns 1 active, 2 pending (private followee), 0 no-op.
local v, a, cap = ARGV[2], ARGV[3], tonumber(ARGV[4])
if redis.call('SISMEMBER', P .. 'followers:' .. a, v) == 1 then return 0 end
if redis.call('SISMEMBER', P .. 'private', a) == 1 then
  redis.call('SADD', P .. 'pending:' .. a, v)
  return 2
end
activate(v, a, cap)
return 1
