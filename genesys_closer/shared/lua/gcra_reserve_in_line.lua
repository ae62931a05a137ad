-- GCRA reservation for work that hands itself back instead of waiting (bulk work about to make its first call).
-- KEYS[1] theoretical arrival time (us), KEYS[2] fleet pause flag, KEYS[3] server-imposed interval,
-- KEYS[4] the line: a sorted set of tickets (member: the work's id, score: its turn in microseconds)
-- ARGV[1] emission interval (us), ARGV[2] longest wait (us) accepted, ARGV[3] ticket, ARGV[4] a ticket whose turn
-- passed this long ago (us) is forgotten (its work was lost or ended without a call)
-- Optional: KEYS[5], KEYS[6], ARGV[5], ARGV[6]: the usage record of a granted slot (rate_usage.lua, prepended)
-- Returns {1, wait}: a slot is reserved (send after the wait) and the ticket leaves the line. {0, wait}: nothing is
-- reserved; come back after the wait, the ticket's turn. A ticket that comes back before its turn is near keeps it
-- (a countdown is capped); any other (new, or back at its turn without a slot near: non-line work took slots in
-- between) gets the turn one interval after the line's last, or the next free slot if later. So handed-back work
-- returns spread at the limiter's pace, and none comes back before a slot can be free for it.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local horizon = tonumber(ARGV[2])
local imposed = tonumber(redis.call('GET', KEYS[3]) or '0')
if imposed > interval then
  interval = imposed
end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. string.format('%d', now - tonumber(ARGV[4])))
local free = tonumber(redis.call('GET', KEYS[1]) or '0')
if free < now then
  free = now
end
local pause_ms = redis.call('PTTL', KEYS[2])
if pause_ms > 0 and now + pause_ms * 1000 > free then
  free = now + pause_ms * 1000
end
if pause_ms <= 0 and free - now <= horizon then
  local next_tat = free + interval
  redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1000)
  redis.call('ZREM', KEYS[4], ARGV[3])
  record_usage(KEYS[5], KEYS[6], free, interval, ARGV[5], ARGV[6])
  return {1, free - now}
end
local mine = redis.call('ZSCORE', KEYS[4], ARGV[3])
if mine and tonumber(mine) > now + horizon then
  return {0, tonumber(mine) - now}
end
redis.call('ZREM', KEYS[4], ARGV[3])
local turn = free
local last = redis.call('ZRANGE', KEYS[4], -1, -1, 'WITHSCORES')
if last[2] and tonumber(last[2]) + interval > turn then
  turn = tonumber(last[2]) + interval
end
redis.call('ZADD', KEYS[4], string.format('%d', turn), ARGV[3])
redis.call('PEXPIRE', KEYS[4], math.ceil((turn - now + tonumber(ARGV[4])) / 1000))
return {0, turn - now}
