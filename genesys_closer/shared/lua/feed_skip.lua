-- Move a batch's feed cursor past items that got their outcome without being fed (an ended batch's remainder).
-- KEYS[1] feed, KEYS[2] batch hash. ARGV[1] the new cursor. Never moves back (two drains may race: both
-- recorded the same items, counted once). Returns the items still not fed.
local fields = redis.call('HMGET', KEYS[2], 'fed', 'feed_total')
local fed, total = tonumber(fields[1] or '0'), tonumber(fields[2] or '0')
local to = math.min(tonumber(ARGV[1]), total)
if to > fed then
  redis.call('HSET', KEYS[2], 'fed', to)
  fed = to
end
if fed >= total then
  redis.call('DEL', KEYS[1])
end
return total - fed
