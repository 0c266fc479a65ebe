"""Socket I/O: the listener, the transport, the session loop, heartbeat, the server,
and the plain-HTTP side (:mod:`~takhin_ws.net.http`: routes, HTTP I/O, the dashboard,
the /metrics exposition).

Internal: import from ``takhin_ws`` and its public tiers."""
