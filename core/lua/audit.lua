-- Audit (read only): recompute every counter's used from the live reservations and compare.
-- For tests, load checks and operators; O(live reservations + counters), so not for hot paths.
-- Returns counters checked, live reservations, and the mismatches as flat triples
-- 'resource#slot', stored used, recomputed used.
local sums = {}
local live = redis.call('SMEMBERS', K_LIVE)
for _, id in ipairs(live) do
  local fields = redis.call('HMGET', reservation_key(id), 'status', 'items')
  if fields[1] ~= 'held' and fields[1] ~= 'confirmed' then
    return redis.error_reply('audit: live reservation ' .. id .. ' has status ' .. tostring(fields[1]))
  end
  for field, quantity in string.gmatch(fields[2], '(%S+) (%S+)') do
    sums[field] = (sums[field] or 0) + tonumber(quantity)
  end
end
local result = { 'ok', 0, 0, #live }
local checked = 0
local used_all = redis.call('HGETALL', K_USED)
local seen = {}
for i = 1, #used_all, 2 do
  local field, used = used_all[i], tonumber(used_all[i + 1])
  seen[field] = true
  checked = checked + 1
  if (sums[field] or 0) ~= used then
    result[#result + 1] = field
    result[#result + 1] = used
    result[#result + 1] = sums[field] or 0
  end
end
for field, sum in pairs(sums) do
  if not seen[field] then
    result[#result + 1] = field
    result[#result + 1] = 0
    result[#result + 1] = sum
  end
end
result[3] = checked
return result
