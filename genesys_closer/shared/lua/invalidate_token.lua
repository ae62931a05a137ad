-- Drop the fleet token only if it is the one that failed. KEYS[1] token hash. ARGV[1] fingerprint of the failed
-- token. A late 401 for an old token must never drop the newer token another worker just stored.
if redis.call('HGET', KEYS[1], 'fp') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
