-- Requests granted per minute, for the console's chart of the last hour (prepended to the reserve scripts).
-- used_key: the bucket's usage hash (field: the minute of server time of the granted slot, value: requests; plus
-- 'limit', the configured limit per minute, and 'admitted', the rate the current interval admits); buckets_key: the
-- set of buckets that record usage (the bucket is added once a minute, so a flushed Redis finds it again). The
-- first grant of a minute drops the minutes older than an hour: the hash stays at about 62 fields, and expires two
-- hours after the last grant. Nothing is recorded without used_key.
local function record_usage(used_key, buckets_key, slot_us, interval, limit, bucket)
  if not used_key then
    return
  end
  local minute = math.floor(slot_us / 60000000)
  if redis.call('HINCRBY', used_key, minute, 1) == 1 then
    for _, field in ipairs(redis.call('HKEYS', used_key)) do
      local m = tonumber(field)
      if m and m < minute - 60 then
        redis.call('HDEL', used_key, field)
      end
    end
    redis.call('HSET', used_key, 'limit', limit, 'admitted', string.format('%d', math.floor(60000000 / interval)))
    redis.call('EXPIRE', used_key, 7200)
    redis.call('SADD', buckets_key, bucket)
  end
end

