-- Fleet-wide GCRA with reservations, on Redis server time.
-- KEYS[1] theoretical arrival time (microseconds), KEYS[2] fleet pause flag, KEYS[3] server-imposed interval
-- ARGV[1] emission interval in microseconds, ARGV[2] longest wait (microseconds) a caller accepts
-- Optional: KEYS[4] the bucket's usage hash, KEYS[5] the set of buckets that record usage, ARGV[3] the configured
-- limit per minute, ARGV[4] this bucket's name (see rate_usage.lua, which is prepended).
-- Returns {granted (1/0), wait in microseconds}. Granted: the slot is reserved; send after the wait.
-- Not granted: nothing reserved; the wait says when asking again is worthwhile.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local pause_ms = redis.call('PTTL', KEYS[2])
if pause_ms > 0 then
  return {0, pause_ms * 1000}
end
local interval = tonumber(ARGV[1])
local imposed = tonumber(redis.call('GET', KEYS[3]) or '0')
if imposed > interval then
  interval = imposed
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
  tat = now
end
local wait = tat - now
if wait > tonumber(ARGV[2]) then
  return {0, wait}
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1000)
record_usage(KEYS[4], KEYS[5], tat, interval, ARGV[3], ARGV[4])
return {1, wait}
