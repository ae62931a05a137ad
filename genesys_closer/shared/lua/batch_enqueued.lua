-- Mark a batch fully enqueued (the 'enqueued' event): an enqueuing batch starts running; its total is recorded
-- unless it was staged with one (never overwritten). KEYS[1] batch hash. ARGV[1] total items, ARGV[2] now (epoch
-- seconds). Returns 1 when the event applied now, else 0 (already running, finished or no batch).
if not transition(KEYS[1], 'enqueued') then
  return 0
end
redis.call('HSETNX', KEYS[1], 'total', ARGV[1])
redis.call('HSET', KEYS[1], 'updated_at', ARGV[2])
finish_if_done(KEYS[1], ARGV[2])
return 1
