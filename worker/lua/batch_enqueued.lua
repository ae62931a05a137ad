-- Mark a batch fully enqueued (the 'enqueued' event; its total is recorded once, never overwritten).
-- KEYS[1] batch hash. ARGV[1] total items, ARGV[2] now (epoch seconds). Returns 1 when recorded now, else 0.
if redis.call('HEXISTS', KEYS[1], 'total') == 1 or not transition(KEYS[1], 'enqueued') then
  return 0
end
redis.call('HSET', KEYS[1], 'total', ARGV[1], 'updated_at', ARGV[2])
finish_if_done(KEYS[1], ARGV[2])
return 1
