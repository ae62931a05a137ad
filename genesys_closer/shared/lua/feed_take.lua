-- Hand a batch's next items to the broker, up to its in-flight bound (genesys_closer/shared/feeder.py).
-- KEYS[1] feed (fixed-width IDs), KEYS[2] in-flight sorted set, KEYS[3] batch hash, KEYS[4] batch items hash.
-- ARGV[1] now (epoch seconds), ARGV[2] width of one ID, ARGV[3] bound when the batch names none,
-- ARGV[4] retention seconds, ARGV[5] the feeder's pace (at most this many in flight whatever the batch's bound;
-- 0: none), ARGV[6..] items that just ended (each leaves the in-flight set once it is counted).
-- Returns {state, options JSON, queue, items not fed yet, fed item...}: items are fed only while the batch runs.
for i = 6, #ARGV do
  if redis.call('HEXISTS', KEYS[4], ARGV[i]) == 1 then
    redis.call('ZREM', KEYS[2], ARGV[i])
  end
end
local fields = redis.call('HMGET', KEYS[3], 'state', 'options', 'queue', 'fed', 'feed_total', 'in_flight')
local state, options, queue = fields[1] or '', fields[2] or '{}', fields[3] or ''
local fed, total = tonumber(fields[4] or '0'), tonumber(fields[5] or '0')
local bound = tonumber(fields[6] or ARGV[3])
local pace = tonumber(ARGV[5])
if pace > 0 and pace < bound then
  bound = pace
end
local reply = {state, options, queue, total - fed}
if state ~= 'running' or fed >= total then
  return reply
end
local take = math.min(bound - redis.call('ZCARD', KEYS[2]), total - fed)
if take <= 0 then
  return reply
end
local width = tonumber(ARGV[2])
local ids = redis.call('GETRANGE', KEYS[1], fed * width, (fed + take) * width - 1)
take = math.floor(#ids / width)  -- a feed lost with a Redis restart without persistence feeds nothing
for i = 0, take - 1 do
  local id = string.sub(ids, i * width + 1, (i + 1) * width)
  redis.call('ZADD', KEYS[2], ARGV[1], id)
  reply[#reply + 1] = id
end
fed = fed + take
redis.call('HSET', KEYS[3], 'fed', fed)
redis.call('EXPIRE', KEYS[2], ARGV[4])
if fed >= total then
  redis.call('DEL', KEYS[1])
end
reply[4] = total - fed
return reply
