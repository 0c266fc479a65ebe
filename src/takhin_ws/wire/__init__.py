"""The wire format: message classes, the converter and codec, the channel grammar, the
event check, the HTTP head helpers, and WebSocket framing
(:mod:`~takhin_ws.wire.websocket`: frames, permessage-deflate, the inbound frame
filter). No I/O.

Internal: import from ``takhin_ws`` and its public tiers."""
