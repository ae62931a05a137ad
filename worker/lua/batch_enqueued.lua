-- Mark a batch fully enqueued. KEYS[1] batch hash. ARGV[1] total items, ARGV[2] now (epoch seconds).
redis.call('HSET', KEYS[1], 'total', ARGV[1], 'updated_at', ARGV[2])
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'enqueuing' then
  state = 'running'
  redis.call('HSET', KEYS[1], 'state', state)
end
local done = tonumber(redis.call('HGET', KEYS[1], 'done') or '0')
if done >= tonumber(ARGV[1]) and not redis.call('HGET', KEYS[1], 'finished_at') then
  redis.call('HSET', KEYS[1], 'finished_at', ARGV[2])
  if state == 'running' then
    redis.call('HSET', KEYS[1], 'state', 'finished')
  end
end
return 1
