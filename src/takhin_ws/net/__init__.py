"""Socket I/O: the listener, the transport, the session loop, routes, heartbeat, HTTP
I/O, the server and its /metrics exposition.

Internal: import from ``takhin_ws`` and its public tiers."""
