-- Newest-first windows of many sorted sets in one call (the request path's fan-in reads), in
-- groups that share a score window and a count. Every set holds candidate members
-- ("<post_id>:<author_id>", docs/feed_cache_format.md); bookkeeping members ("~built", the feed
-- cache's sentinel) are left out, though they count toward `count`.
-- KEYS: the sorted sets, group after group. ARGV: per group, how many keys, max, min, count.
-- Returns per group three space-separated strings: its members, their scores, and how many each
-- key gave. The client parses each with one C call instead of one object per member.
local out, k = {}, 1
for g = 1, #ARGV, 4 do
  local n, max, min, count = tonumber(ARGV[g]), ARGV[g + 1], ARGV[g + 2], ARGV[g + 3]
  local members, scores, counts = {}, {}, {}
  for i = 1, n do
    local rows = redis.call('ZREVRANGEBYSCORE', KEYS[k], max, min, 'WITHSCORES', 'LIMIT', 0, count)
    local kept = 0
    for j = 1, #rows, 2 do
      if string.sub(rows[j], 1, 1) ~= '~' then
        members[#members + 1] = rows[j]
        scores[#scores + 1] = rows[j + 1]
        kept = kept + 1
      end
    end
    counts[i] = kept
    k = k + 1
  end
  out[#out + 1] = table.concat(members, ' ')
  out[#out + 1] = table.concat(scores, ' ')
  out[#out + 1] = table.concat(counts, ' ')
end
return out
