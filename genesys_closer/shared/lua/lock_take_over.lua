-- Take over a lock whose holder is known to be gone (see genesys_closer/shared/locks.py, OwnedLock.take_over).
-- KEYS[1] the lock. ARGV[1] the token it must still hold, ARGV[2] the new owner's token, ARGV[3] time-to-live in
-- ms. Returns 1 when the lock is the new owner's now, 0 when it changed meanwhile (expired, released or taken).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
