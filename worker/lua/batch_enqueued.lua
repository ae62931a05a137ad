-- Mark a batch fully enqueued. KEYS[1] batch hash. ARGV[1] total items, ARGV[2] now (epoch seconds).
redis.call('HSET', KEYS[1], 'total', ARGV[1], 'updated_at', ARGV[2])
if redis.call('HGET', KEYS[1], 'state') == 'enqueuing' then
  redis.call('HSET', KEYS[1], 'state', 'running')
end
finish_if_done(KEYS[1], ARGV[2])
return 1
