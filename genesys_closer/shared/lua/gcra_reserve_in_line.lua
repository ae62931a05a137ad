-- GCRA reservation for work that hands itself back instead of waiting (bulk work about to make its first call).
-- KEYS[1] theoretical arrival time (us), KEYS[2] fleet pause flag, KEYS[3] server-imposed interval,
-- KEYS[4] the line: a sorted set of tickets (member: the work's id, score: its turn in microseconds)
-- ARGV[1] emission interval (us), ARGV[2] longest wait (us) accepted, ARGV[3] ticket, ARGV[4] a ticket older than
-- this (us) is forgotten (its work was lost or ended without a call)
-- Returns {1, wait}: a slot is reserved (send after the wait) and the ticket leaves the line. {0, wait}: nothing is
-- reserved; come back after the wait, at the ticket's turn: a new ticket's turn is one interval after the last
-- ticket's (or after the next free slot), a ticket keeps its turn when it comes back early, and one whose turn has
-- passed (another took the slot) comes back after one interval. So handed-back work returns spread at the
-- limiter's pace, in the order it lined up, and a ticket never moves back in the line.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
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
local mine = redis.call('ZSCORE', KEYS[4], ARGV[3])
if pause_ms <= 0 and free - now <= tonumber(ARGV[2]) then
  local next_tat = free + interval
  redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1000)
  if mine then
    redis.call('ZREM', KEYS[4], ARGV[3])
  end
  return {1, free - now}
end
if mine then
  mine = tonumber(mine)
  if mine > now then
    return {0, mine - now}
  end
  return {0, interval}
end
local turn = free
local last = redis.call('ZRANGE', KEYS[4], -1, -1, 'WITHSCORES')
if last[2] and tonumber(last[2]) + interval > turn then
  turn = tonumber(last[2]) + interval
end
redis.call('ZADD', KEYS[4], string.format('%d', turn), ARGV[3])
redis.call('PEXPIRE', KEYS[4], math.ceil((turn - now + tonumber(ARGV[4])) / 1000))
return {0, turn - now}
