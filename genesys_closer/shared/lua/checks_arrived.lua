-- A batched-checks pump has started: the marker of the pump sent for then (or earlier) goes, in one step, so a
-- marker set meanwhile for a later pump stays. KEYS[1] the kick marker. ARGV[1] now + slack (epoch seconds).
-- Returns 1 when the marker was removed.
local scheduled = tonumber(redis.call('GET', KEYS[1]))
if scheduled and scheduled <= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
