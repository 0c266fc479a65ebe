-- Takes the lease if it is free, renews it if this node holds it.
-- KEYS: the lease; ARGV: this node's id, the TTL in milliseconds.
-- Returns 1 when this node holds the lease now, else the id of the node that does.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
elseif not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return holder
