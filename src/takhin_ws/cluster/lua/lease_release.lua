-- Gives the lease up if this node holds it. KEYS: the lease; ARGV: this node's id.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
