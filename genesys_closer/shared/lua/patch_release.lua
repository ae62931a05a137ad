-- Release the PATCH claim of one conversation if ARGV[1] still owns it (its outcome is recorded). KEYS[1] the claim.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
