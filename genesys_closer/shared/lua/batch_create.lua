-- Create a batch unless its id is in use (its hash, items or members exist): an existing batch is never
-- overwritten. KEYS[1] batch hash, KEYS[2] batch items, KEYS[3] batch members, KEYS[4] recent-batches index.
-- ARGV[1] batch id, ARGV[2] now (epoch seconds), ARGV[3] retention seconds, ARGV[4] initial state, ARGV[5] label,
-- ARGV[6] source, ARGV[7] options JSON, ARGV[8] queue, ARGV[9] origin. Returns 1 when created, 0 when in use.
if redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[3]) > 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'state', ARGV[4], 'done', 0, 'created_at', ARGV[2], 'label', ARGV[5],
           'source', ARGV[6], 'options', ARGV[7], 'queue', ARGV[8], 'origin', ARGV[9])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[4], 0, tonumber(ARGV[2]) - tonumber(ARGV[3]))
return 1
