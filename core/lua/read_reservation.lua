-- Read one reservation; a hold past its end is expired first, so a read never shows a hold
-- that the clock has ended. ARGV[5] id.
local id = ARGV[5]
local key = reservation_key(id)
if redis.call('EXISTS', key) == 0 then return { 'notfound', 0 } end
local expired = expire_if_due(id, now_ms())
local fields = redis.call('HMGET', key, 'status', 'doc')
return { 'ok', expired, fields[1], fields[2] }
