-- Claim the PATCH of one conversation for one close (see worker/running/patch_guard.py). KEYS[1] the claim. ARGV[1] the
-- owner (a batch id, or "single" for standalone closes), ARGV[2] time-to-live in ms. Returns "" when the claim is
-- the owner's now, or the owner of another close whose PATCH is out and whose outcome is not recorded yet.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return holder
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ''
