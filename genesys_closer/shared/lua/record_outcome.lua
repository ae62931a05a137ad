-- Record one close outcome; count it in its batch exactly once.
-- KEYS[1] outcome by conversation, KEYS[2] batch items hash ('' for none), KEYS[3] batch hash
-- ARGV[1] item key, ARGV[2] record JSON, ARGV[3] outcome, ARGV[4] retention seconds, ARGV[5] now (epoch seconds),
-- ARGV[6] '1' to also store the latest outcome under KEYS[1] (not for invalid IDs, which have no conversation),
-- ARGV[7] what KEYS[1] holds: the record itself, or for a batch item a reference to its record in the batch
-- Returns 1 when the item was counted now, 0 when it had been recorded before (a task that ran twice: its later
-- copy changes nothing, not even the conversation's latest outcome).
if KEYS[2] ~= '' and redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then
  return 0
end
if ARGV[6] == '1' then
  redis.call('SET', KEYS[1], ARGV[7], 'EX', ARGV[4])
end
if KEYS[2] == '' then
  return 1
end
redis.call('HINCRBY', KEYS[3], 'done', 1)
redis.call('HSET', KEYS[3], 'updated_at', ARGV[5])
redis.call('HINCRBY', KEYS[3], 'outcome:' .. ARGV[3], 1)
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[4])
finish_if_done(KEYS[3], ARGV[5])
return 1
