-- A clean sample: the fleet trusts analytics confirmations again, unless it is still cooling off.
-- KEYS[1] the trust hash; ARGV[1] now (epoch seconds). Returns 1 when trust was restored.
local until_at = redis.call('HGET', KEYS[1], 'until')
if until_at and tonumber(until_at) <= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
