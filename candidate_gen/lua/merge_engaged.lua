-- KEYS[1]: a user's engaged set. ARGV: cutoff_ms, cap, ttl_s, n_drop, n_drop members to remove,
-- then score, member pairs to add (a newer time wins). Returns the set's size.
local key, cap, n_drop = KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[4])
if n_drop > 0 then redis.call('ZREM', key, unpack(ARGV, 5, 4 + n_drop)) end
if #ARGV > 4 + n_drop then redis.call('ZADD', key, 'GT', unpack(ARGV, 5 + n_drop)) end
redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. ARGV[1])
redis.call('ZREMRANGEBYRANK', key, 0, -(cap + 1))
redis.call('EXPIRE', key, ARGV[3])
return redis.call('ZCARD', key)
