-- Sets `epoch` to the epoch of the state hash, creating it when the state is
-- missing (Redis lost it): the new epoch is ARGV[1], and the streams of the old
-- one are forgotten. Prepended to current_epoch.lua and publish.lua.
-- KEYS: the state hash, then every stream key.
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
