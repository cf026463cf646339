-- ARGV: prefix, user u, is_private (0/1), cap. A new or updated account. Going private keeps the
-- followers already approved; going public accepts the pending requests (as Instagram does).
local u, private, cap = ARGV[2], ARGV[3], tonumber(ARGV[4])
redis.call('SADD', P .. 'users', u)
if private == '1' then
  redis.call('SADD', P .. 'private', u)
  return 1
end
if redis.call('SREM', P .. 'private', u) == 1 then
  for _, v in ipairs(redis.call('SMEMBERS', P .. 'pending:' .. u)) do activate(v, u, cap) end
end
return 0
