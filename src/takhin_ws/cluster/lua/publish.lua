-- After ensure_epoch.lua: assigns the next offset of a stream and appends the entry
-- with the id 0-<offset>, so stream ids are offsets.
-- KEYS: the state hash, every stream key, then the stream to append to (again).
-- ARGV: a new epoch candidate, the counter field (the stream's name), the MAXLEN
-- operator ('=' or '~'), MAXLEN, then the entry's field/value pairs.
-- Returns {offset, epoch}.
local target = KEYS[#KEYS]
local offset = redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
redis.call('XADD', target, 'MAXLEN', ARGV[3], ARGV[4], '0-' .. offset,
           'epoch', epoch, unpack(ARGV, 5))
return {offset, epoch}
