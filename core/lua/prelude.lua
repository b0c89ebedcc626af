-- Allot: helpers shared by every function of the library (see core/src/store/functions.rs).
-- Every key of a site starts with args[1] = 'allot:{<site>}:' and so lives in one Redis Cluster
-- hash slot; keys[1] is the site's event stream and names that slot for routing. Keys built
-- below from the prefix are in the same slot by construction.
-- args[2] almost-full threshold in percent, args[3] approximate stream length bound,
-- args[4] seconds to keep finished (cancelled, expired) reservations; each function's own
-- arguments follow. bind() sets these per call (a function runs alone, never re-entered).
local P, THRESHOLD_PCT, EVENTS_MAXLEN, FINISHED_TTL_SECONDS
local K_EVENTS
local K_CAPACITY -- hash: 'resource#slot' -> capacity
local K_USED     -- hash: 'resource#slot' -> used
local K_ZONES    -- hash: 'resource#slot' -> ',zone1,zone2,' (absent: no restriction)
local K_INDEX    -- zset, all scores 0: 'resource#slot', lexicographic = (resource, slot)
local K_HOLDS    -- zset: reservation id -> hold end in ms since the epoch
local K_LIVE     -- set: ids of held and confirmed reservations
local K_META     -- hash: acks (see touch)

local function bind(keys, args)
  P = args[1]
  THRESHOLD_PCT = tonumber(args[2])
  EVENTS_MAXLEN = args[3]
  FINISHED_TTL_SECONDS = tonumber(args[4])
  K_EVENTS = keys[1]
  K_CAPACITY = P .. 'capacity'
  K_USED = P .. 'used'
  K_ZONES = P .. 'zones'
  K_INDEX = P .. 'counters'
  K_HOLDS = P .. 'holds'
  K_LIVE = P .. 'live'
  K_META = P .. 'meta'
end

-- An answer that changes nothing (a replay, a second confirm or cancel) still writes this one
-- counter, so that WAIT on the same connection covers the write it reports: replication is in
-- order, so a replica that has this write has every earlier one.
local function touch()
  redis.call('HINCRBY', K_META, 'acks', 1)
end

local function reservation_key(id) return P .. 'res:' .. id end

-- The store's clock: one clock for every coordinator, so holds end at the same moment for all.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- RFC 3339 UTC with milliseconds, from ms since the epoch (days-to-civil, proleptic Gregorian).
local function iso8601(ms)
  local seconds = math.floor(ms / 1000)
  local millis = ms - seconds * 1000
  local days = math.floor(seconds / 86400)
  local sod = seconds - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local year = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local day = doy - math.floor((153 * mp + 2) / 5) + 1
  local month = mp < 10 and mp + 3 or mp - 9
  if month <= 2 then year = year + 1 end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', year, month, day,
    math.floor(sod / 3600), math.floor((sod % 3600) / 60), sod % 60, millis)
end

local function split_counter(field)
  local at = string.find(field, '#', 1, true)
  return string.sub(field, 1, at - 1), string.sub(field, at + 1)
end

-- 0 open, 1 almost full (used at or over the threshold), 2 full (remaining 0).
local function level(capacity, used)
  if capacity - used <= 0 then return 2 end
  if used * 100 >= THRESHOLD_PCT * capacity then return 1 end
  return 0
end

local function counter_json(field, capacity, used)
  local resource, slot = split_counter(field)
  return string.format('{"resource":"%s","slot":"%s","capacity":%d,"used":%d}', resource, slot, capacity, used)
end

local function emit(event_type, data)
  return redis.call('XADD', K_EVENTS, 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'type', event_type, 'data', data)
end

-- The version the site stands at: the id of its latest event ('0-0' before the first). Read
-- from the stream itself, so that writing an event is one call. (Entries are never deleted,
-- and approximate trimming keeps the newest, so the last entry is the latest event.)
local function version()
  local last = redis.call('XREVRANGE', K_EVENTS, '+', '-', 'COUNT', 1)
  return last[1] and last[1][1] or '0-0'
end

-- One counter_full / counter_reopened / counter_almost_full event per counter whose level moved.
-- changes: list of {field, before_level (nil for a new counter), capacity, used}.
local function emit_transitions(changes)
  for _, c in ipairs(changes) do
    local before = c[2]
    if before ~= nil then
      local after = level(c[3], c[4])
      local event_type = nil
      if after == 2 and before ~= 2 then event_type = 'counter_full'
      elseif after ~= 2 and before == 2 then event_type = 'counter_reopened'
      elseif after == 1 and before == 0 then event_type = 'counter_almost_full' end
      if event_type then
        emit(event_type, '{"counters":[' .. counter_json(c[1], c[3], c[4]) .. ']}')
      end
    end
  end
end

local function with_status(doc, status)
  return '{"status":"' .. status .. '",' .. string.sub(doc, 2)
end

-- Takes a live reservation out of `used`, marks it finished, and writes its event.
local function finish(id, status, event_type)
  local key = reservation_key(id)
  local fields = redis.call('HMGET', key, 'items', 'doc')
  local changes, counters = {}, {}
  for field, quantity in string.gmatch(fields[1], '(%S+) (%S+)') do
    local capacity = tonumber(redis.call('HGET', K_CAPACITY, field) or '0')
    local used = tonumber(redis.call('HGET', K_USED, field) or '0')
    local after = redis.call('HINCRBY', K_USED, field, -tonumber(quantity))
    changes[#changes + 1] = { field, level(capacity, used), capacity, after }
    counters[#counters + 1] = counter_json(field, capacity, after)
  end
  redis.call('HSET', key, 'status', status)
  redis.call('EXPIRE', key, FINISHED_TTL_SECONDS)
  redis.call('ZREM', K_HOLDS, id)
  redis.call('SREM', K_LIVE, id)
  emit(event_type, '{"reservation":' .. with_status(fields[2], status) .. ',"counters":[' .. table.concat(counters, ',') .. ']}')
  emit_transitions(changes)
end

-- Expires one reservation if it is held and its hold has ended. Returns 1 if it did.
local function expire_if_due(id, now)
  local key = reservation_key(id)
  local fields = redis.call('HMGET', key, 'status', 'expires_ms')
  if fields[1] == 'held' and tonumber(fields[2]) <= now then
    finish(id, 'expired', 'reservation_expired')
    return 1
  end
  return 0
end

-- Expires up to `limit` due holds of the site, oldest first. Returns how many it expired.
local function expire_due(now, limit)
  local expired = 0
  local due = redis.call('ZRANGEBYSCORE', K_HOLDS, '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(due) do
    if expire_if_due(id, now) == 1 then
      expired = expired + 1
    else
      redis.call('ZREM', K_HOLDS, id) -- confirmed or cancelled meanwhile: a stale index entry
    end
  end
  return expired
end

-- The same, after one cheap look at the earliest hold: the common case (nothing due) costs one
-- ZRANGE. For the paths every request takes (reserve, availability).
local function expire_due_if_any(now, limit)
  local earliest = redis.call('ZRANGE', K_HOLDS, 0, 0, 'WITHSCORES')
  if earliest[2] and tonumber(earliest[2]) <= now then
    return expire_due(now, limit)
  end
  return 0
end
