-- Cancel or stop a batch, guarded: finished and cancelled batches are final, a stopped one stays stopped.
-- KEYS[1] batch hash. ARGV[1] event ('cancel' or 'stop'), ARGV[2] reason (kept with the change; '' for none).
-- Returns {1 when the state changed now else 0, the state after the call ('' for no batch)}.
if ARGV[1] ~= 'cancel' and ARGV[1] ~= 'stop' then
  return redis.error_reply('batch_end.lua takes cancel or stop, not ' .. ARGV[1])
end
local after = transition(KEYS[1], ARGV[1])
if not after then
  return {0, redis.call('HGET', KEYS[1], 'state') or ''}
end
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], 'reason', ARGV[2])
end
return {1, after}
