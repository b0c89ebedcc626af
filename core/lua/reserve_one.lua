-- One reservation, all items or none, with its idempotency record and events: the body of
-- reserve.lua (one per call) and reserve_batch.lua (several per call, each on its own).
-- Returns { tag, a, b, expired }: placed/replay (status, document), reused, zone (refused
-- counters JSON), short (shortages JSON); expired counts the holds this call expired.
--
-- Due holds are expired only when they matter: when the items do not fit (then up to
-- `expiry_limit` due holds of the site are expired and the check runs again; 0: none), or when the
-- reservation replayed is itself a due hold. A reservation that fits places without looking
-- at the holds, so the common case costs no hold lookup; the sweeper and reads expire the rest.
local function reserve_one(id, idem, fingerprint, hold_seconds, zone, doc, idem_ttl, fields, quantities, now,
                           expiry_limit)
  -- The same call sent again (a client library's retry, a re-send after a lost reply): the id
  -- the coordinator chose is already stored, so answer it as a replay instead of placing twice.
  -- (With a key, the idempotency record below finds it first.)
  if idem == '' and redis.call('EXISTS', reservation_key(id)) == 1 then
    touch()
    local expired = expire_if_due(id, now)
    local stored = redis.call('HMGET', reservation_key(id), 'status', 'doc')
    return { 'replay', stored[1], stored[2], expired }
  end
  local idem_key = P .. 'idem:' .. idem
  if idem ~= '' then
    local record = redis.call('GET', idem_key)
    if record then
      local space = string.find(record, ' ', 1, true)
      if string.sub(record, 1, space - 1) ~= fingerprint then
        return { 'reused', '', '', 0 }
      end
      local previous = string.sub(record, space + 1)
      if redis.call('EXISTS', reservation_key(previous)) == 1 then
        touch()
        local expired = expire_if_due(previous, now)
        local stored = redis.call('HMGET', reservation_key(previous), 'status', 'doc')
        return { 'replay', stored[1], stored[2], expired }
      end
    end
  end

  local refused = {}
  for i, field in ipairs(fields) do
    local zones = redis.call('HGET', K_ZONES, field)
    if zones and (zone == '' or not string.find(zones, ',' .. zone .. ',', 1, true)) then
      local resource, slot = split_counter(field)
      refused[#refused + 1] = string.format('{"resource":"%s","slot":"%s"}', resource, slot)
    end
  end
  if #refused > 0 then
    return { 'zone', '[' .. table.concat(refused, ',') .. ']', '', 0 }
  end

  local capacities, useds, shortages = {}, {}, {}
  local function check()
    shortages = {}
    for i, field in ipairs(fields) do
      local capacity = tonumber(redis.call('HGET', K_CAPACITY, field) or '0')
      local used = tonumber(redis.call('HGET', K_USED, field) or '0')
      capacities[i], useds[i] = capacity, used
      if used + quantities[i] > capacity then
        local resource, slot = split_counter(field)
        local remaining = capacity - used
        if remaining < 0 then remaining = 0 end
        shortages[#shortages + 1] = string.format('{"resource":"%s","slot":"%s","requested":%d,"remaining":%d}',
          resource, slot, quantities[i], remaining)
      end
    end
  end
  check()
  local expired = 0
  if #shortages > 0 then
    -- Holds that have ended must not block anyone: expire them, then look again.
    if expiry_limit > 0 then expired = expire_due_if_any(now, expiry_limit) end
    if expired > 0 then check() end
    if #shortages > 0 then
      return { 'short', '[' .. table.concat(shortages, ',') .. ']', '', expired }
    end
  end

  local changes, counters, items = {}, {}, {}
  for i, field in ipairs(fields) do
    local after = redis.call('HINCRBY', K_USED, field, quantities[i])
    changes[i] = { field, level(capacities[i], useds[i]), capacities[i], after }
    counters[i] = counter_json(field, capacities[i], after)
    items[i] = field .. ' ' .. string.format('%d', quantities[i])
  end

  local status = 'confirmed'
  local stamped = '{"created_at":"' .. iso8601(now) .. '",'
  local key = reservation_key(id)
  if hold_seconds > 0 then
    status = 'held'
    local expires_ms = now + hold_seconds * 1000
    stamped = stamped .. '"expires_at":"' .. iso8601(expires_ms) .. '",'
    redis.call('HSET', key, 'expires_ms', string.format('%d', expires_ms))
    redis.call('ZADD', K_HOLDS, string.format('%d', expires_ms), id)
  end
  stamped = stamped .. string.sub(doc, 2)
  redis.call('HSET', key, 'status', status, 'doc', stamped, 'items', table.concat(items, ' '))
  redis.call('SADD', K_LIVE, id)
  if idem ~= '' then
    redis.call('SET', idem_key, fingerprint .. ' ' .. id, 'EX', idem_ttl)
  end
  emit('reservation_placed', '{"reservation":' .. with_status(stamped, status) .. ',"counters":[' .. table.concat(counters, ',') .. ']}')
  emit_transitions(changes)
  return { 'placed', status, stamped, expired }
end
