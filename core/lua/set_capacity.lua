-- Set capacity absolutely for the named counters, creating them if new, in one step with the
-- capacity_changed event and any level transitions. Refuses the whole change if the site would
-- exceed its counter bound. Due holds are expired first, so `used` and the transitions reflect
-- holds that have ended. ARGV[5] counters-per-site bound, [6] expiry batch bound, [7..] triples
-- of 'resource#slot', capacity, zones (',z1,z2,' or '' for no restriction).
local bound = tonumber(ARGV[5])

-- ',a,b,' -> '["a","b"]' (zone ids are pattern-checked: no quoting needed).
local function zones_json(csv)
  local names = {}
  for zone in string.gmatch(csv, '[^,]+') do names[#names + 1] = '"' .. zone .. '"' end
  return '[' .. table.concat(names, ',') .. ']'
end
local expired = expire_due(now_ms(), tonumber(ARGV[6]))
local new_counters = 0
for i = 7, #ARGV, 3 do
  if not redis.call('ZSCORE', K_INDEX, ARGV[i]) then new_counters = new_counters + 1 end
end
local existing = redis.call('ZCARD', K_INDEX)
if existing + new_counters > bound then
  return { 'toomany', expired, existing, new_counters }
end

local changes, counters, useds = {}, {}, {}
for i = 7, #ARGV, 3 do
  local field, capacity, zones = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local before_capacity = redis.call('HGET', K_CAPACITY, field)
  local used = tonumber(redis.call('HGET', K_USED, field) or '0')
  local before = nil
  if before_capacity then before = level(tonumber(before_capacity), used) end
  redis.call('HSET', K_CAPACITY, field, ARGV[i + 1])
  if zones == '' then redis.call('HDEL', K_ZONES, field) else redis.call('HSET', K_ZONES, field, zones) end
  redis.call('ZADD', K_INDEX, 0, field)
  changes[#changes + 1] = { field, before, capacity, used }
  -- capacity_changed also carries each counter's allow-list, so a view kept from events knows it.
  local json = counter_json(field, capacity, used)
  if zones ~= '' then json = string.sub(json, 1, -2) .. ',"zones":' .. zones_json(zones) .. '}' end
  counters[#counters + 1] = json
  useds[#useds + 1] = used
end
emit('capacity_changed', '{"counters":[' .. table.concat(counters, ',') .. ']}')
emit_transitions(changes)
return { 'ok', expired, version(), useds }
