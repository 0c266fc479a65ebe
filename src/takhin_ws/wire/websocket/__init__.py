"""WebSocket framing (RFC 6455, RFC 7692), without I/O: server frames built once and
shared, the rules of client frames, permessage-deflate, and the inbound frame filter.

Internal: import from ``takhin_ws`` and its public tiers."""
