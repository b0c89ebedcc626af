-- Expire due holds of one site, at most ARGV[5] of them. Returns how many it expired and how
-- many holds the site still has (0 lets the sweeper drop the site from its index).
local expired = expire_due(now_ms(), tonumber(ARGV[5]))
return { 'ok', expired, redis.call('ZCARD', K_HOLDS) }
