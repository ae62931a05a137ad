-- Batch state changes, shared by the batch scripts. Loaded after NEXT_STATE, the transition table that
-- genesys_closer/shared/stores/batch_state.py renders from its pure next_state function (NEXT_STATE[state][event] = next state;
-- absent: the event does not apply). Every change of a batch's state goes through transition().

-- Apply ``event`` to the batch hash; returns the state after it, or false when it does not apply (nothing written).
local function transition(batch_key, event)
  local state = redis.call('HGET', batch_key, 'state')
  if not state then
    return false
  end
  local after = (NEXT_STATE[state] or {})[event]
  if not after then
    return false
  end
  if after ~= state then
    redis.call('HSET', batch_key, 'state', after)
  end
  return after
end

-- Once every item is counted and the batch is fully enqueued: the 'completed' event (a running batch becomes
-- 'finished', a cancelled or stopped one keeps its state) and finished_at, which says when it ended. Once only.
local function finish_if_done(batch_key, now)
  if redis.call('HEXISTS', batch_key, 'finished_at') == 1 then
    return
  end
  local total = tonumber(redis.call('HGET', batch_key, 'total') or '-1')
  local done = tonumber(redis.call('HGET', batch_key, 'done') or '0')
  if total < 0 or done < total then
    return
  end
  if transition(batch_key, 'completed') then
    redis.call('HSET', batch_key, 'finished_at', now)
  end
end
