-- Reserve: all items or none, with the idempotency record and the events, in one step.
-- ARGV[5] id, [6] idempotency key ('' none), [7] request fingerprint, [8] hold seconds (0 none),
-- [9] zone ('' none), [10] document prefix (JSON object without status and timestamps),
-- [11] idempotency TTL seconds, [12] expiry batch bound, [13..] pairs of 'resource#slot', quantity.
local now = now_ms()

local fields, quantities = {}, {}
for i = 13, #ARGV, 2 do
  fields[#fields + 1] = ARGV[i]
  quantities[#quantities + 1] = tonumber(ARGV[i + 1])
end

local result = reserve_one(ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8]), ARGV[9], ARGV[10], ARGV[11],
  fields, quantities, now, tonumber(ARGV[12]))
return { result[1], result[4], result[2], result[3] }
