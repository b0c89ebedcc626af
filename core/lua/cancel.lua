-- Cancel: held or confirmed -> cancelled, capacity released. Cancelling again, or cancelling an
-- expired reservation, changes nothing and answers it as it stands. ARGV[5] id.
local id = ARGV[5]
local key = reservation_key(id)
if redis.call('EXISTS', key) == 0 then return { 'notfound', 0 } end
local expired = expire_if_due(id, now_ms())
local status = redis.call('HGET', key, 'status')
if status == 'held' or status == 'confirmed' then
  finish(id, 'cancelled', 'reservation_cancelled')
  status = 'cancelled'
else
  touch()
end
return { 'ok', expired, status, redis.call('HGET', key, 'doc') }
