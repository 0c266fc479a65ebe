"""The wire format: message classes, the converter and codec, the channel grammar,
WebSocket frames, permessage-deflate, the inbound frame filter, the event check and
the HTTP head helpers. No I/O.

Internal: import from ``takhin_ws`` and its public tiers."""
