-- Start or extend the fleet pause. KEYS[1] pause flag, KEYS[2] pause counter. ARGV[1] pause in milliseconds.
-- Returns 1 when this call started a new pause (none was running), else 0.
local current = redis.call('PTTL', KEYS[1])
local wanted = tonumber(ARGV[1])
if current >= wanted then
  return 0
end
redis.call('SET', KEYS[1], '1', 'PX', wanted)
if current <= 0 then
  redis.call('INCR', KEYS[2])
  return 1
end
return 0
