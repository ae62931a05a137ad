-- Make sure a batched-checks pump runs by a time, in one step (no second pump sent beside the first).
-- KEYS[1] the kick marker (when the pump on its way is due). ARGV[1] ready_at (epoch seconds), ARGV[2] slack
-- (seconds), ARGV[3] the marker's time-to-live (ms). Returns 1 when the caller must send a pump, 0 when one already
-- on its way is due by ready_at + slack.
local scheduled = tonumber(redis.call('GET', KEYS[1]))
if scheduled and scheduled <= tonumber(ARGV[1]) + tonumber(ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
