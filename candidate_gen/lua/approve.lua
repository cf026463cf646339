-- ARGV: prefix, requester v, private followee a, cap. Returns 1 activated, 0 no pending request.
local v, a, cap = ARGV[2], ARGV[3], tonumber(ARGV[4])
if redis.call('SISMEMBER', P .. 'pending:' .. a, v) == 0 then return 0 end
activate(v, a, cap)
return 1
