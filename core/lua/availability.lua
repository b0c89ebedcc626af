-- Availability: expire due holds (bounded), then read the counters in (resource, slot) order
-- with the version they stand at. ARGV[5] resource ('' any), [6] from slot ('' none),
-- [7] to slot ('' none), [8] expiry batch bound. Returns flat quadruples
-- 'resource#slot', capacity, used, zones. With a resource, the slot range is one ZRANGEBYLEX
-- (byte order); without one, every counter is returned and the caller filters by slot, since
-- Lua's string comparison follows the server's locale, not byte order.
local resource, from, to = ARGV[5], ARGV[6], ARGV[7]
local now = now_ms()
local expired = expire_due_if_any(now, tonumber(ARGV[8]))

local members
if resource ~= '' then
  -- '#' sorts below every character of a slot, and '$' right after '#'.
  local low = '[' .. resource .. '#' .. from
  local high = (to == '') and ('(' .. resource .. '$') or ('(' .. resource .. '#' .. to)
  members = redis.call('ZRANGEBYLEX', K_INDEX, low, high)
else
  members = redis.call('ZRANGE', K_INDEX, 0, -1)
end

local result = { 'ok', expired, version() }
if #members == 0 then return result end
-- HMGET in chunks: Lua's unpack() cannot spread more than a few thousand values.
local CHUNK = 1000
for first = 1, #members, CHUNK do
  local last = math.min(first + CHUNK - 1, #members)
  local chunk = { unpack(members, first, last) }
  local capacities = redis.call('HMGET', K_CAPACITY, unpack(chunk))
  local useds = redis.call('HMGET', K_USED, unpack(chunk))
  local zones = redis.call('HMGET', K_ZONES, unpack(chunk))
  for i, field in ipairs(chunk) do
    result[#result + 1] = field
    result[#result + 1] = capacities[i] or '0'
    result[#result + 1] = useds[i] or '0'
    result[#result + 1] = zones[i] or ''
  end
end
return result
