-- Several reservations of one site in one call, each all-or-nothing on its own and in order,
-- exactly as if each were its own reserve.lua call (a later one sees what an earlier one
-- placed, so two attempts with one key make one reservation).
-- ARGV[5] expiry batch bound, [6] idempotency TTL seconds, [7] count; then per reservation:
-- id, idempotency key ('' none), fingerprint, hold seconds (0 none), zone ('' none),
-- document prefix, item count, and that many pairs of 'resource#slot', quantity.
-- Returns { 'batch', expired, tag1, a1, b1, tag2, a2, b2, ... }.
local now = now_ms()
local expired = 0

local out = { 'batch', expired }
local at = 8
for _ = 1, tonumber(ARGV[7]) do
  local id, idem, fingerprint = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  local hold_seconds, zone, doc = tonumber(ARGV[at + 3]), ARGV[at + 4], ARGV[at + 5]
  local count = tonumber(ARGV[at + 6])
  at = at + 7
  local fields, quantities = {}, {}
  for _ = 1, count do
    fields[#fields + 1] = ARGV[at]
    quantities[#quantities + 1] = tonumber(ARGV[at + 1])
    at = at + 2
  end
  -- One expiry budget for the whole call, as for a single reservation: the batch expires at
  -- most ARGV[5] holds in all, however many of its reservations find a shortage.
  local result = reserve_one(id, idem, fingerprint, hold_seconds, zone, doc, ARGV[6], fields, quantities, now,
    math.max(tonumber(ARGV[5]) - expired, 0))
  out[#out + 1] = result[1]
  out[#out + 1] = result[2]
  out[#out + 1] = result[3]
  expired = expired + result[4]
end
out[2] = expired
return out
