-- Shared by record_outcome.lua and batch_enqueued.lua (loaded in front of them).
-- Mark the batch hash finished once every item is counted and it is fully enqueued; a running batch becomes
-- 'finished', a cancelled or stopped one keeps its state (its finished_at still says when it ended).
local function finish_if_done(batch_key, now)
  local total = tonumber(redis.call('HGET', batch_key, 'total') or '-1')
  local done = tonumber(redis.call('HGET', batch_key, 'done') or '0')
  local state = redis.call('HGET', batch_key, 'state')
  if total < 0 or done < total or state == 'enqueuing' or redis.call('HEXISTS', batch_key, 'finished_at') == 1 then
    return
  end
  redis.call('HSET', batch_key, 'finished_at', now)
  if state == 'running' then
    redis.call('HSET', batch_key, 'state', 'finished')
  end
end
