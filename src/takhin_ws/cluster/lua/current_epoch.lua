-- After ensure_epoch.lua. KEYS: the state hash, every stream key; ARGV: a new epoch
-- candidate. Returns the epoch.
return epoch
