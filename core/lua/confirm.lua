-- Confirm: held -> confirmed. A hold past its end is expired here first, so a late confirm
-- never wins against the clock. ARGV[5] id.
local id = ARGV[5]
local key = reservation_key(id)
if redis.call('EXISTS', key) == 0 then return { 'notfound', 0 } end
local expired = expire_if_due(id, now_ms())
local fields = redis.call('HMGET', key, 'status', 'doc')
local status = fields[1]
if status == 'held' then
  -- A confirmed reservation no longer ends: its document drops the hold's end (the first
  -- "expires_at" is the one this service wrote, before any client text).
  local doc = string.gsub(fields[2], '"expires_at":"[^"]*",', '', 1)
  fields[2] = doc
  redis.call('HSET', key, 'status', 'confirmed', 'doc', doc)
  redis.call('HDEL', key, 'expires_ms')
  redis.call('ZREM', K_HOLDS, id)
  local counters = {}
  for field in string.gmatch(redis.call('HGET', key, 'items'), '(%S+) %S+') do
    local capacity = tonumber(redis.call('HGET', K_CAPACITY, field) or '0')
    local used = tonumber(redis.call('HGET', K_USED, field) or '0')
    counters[#counters + 1] = counter_json(field, capacity, used)
  end
  emit('reservation_confirmed', '{"reservation":' .. with_status(fields[2], 'confirmed') .. ',"counters":[' .. table.concat(counters, ',') .. ']}')
  return { 'ok', expired, 'confirmed', fields[2] }
elseif status == 'confirmed' then
  touch()
  return { 'ok', expired, status, fields[2] }
end
return { 'notheld', expired, status, fields[2] }
