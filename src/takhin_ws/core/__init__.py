"""The sans-IO core: the hub and its history, views, queues, subscriptions and client
registry, the session core and its replies, chart series, change detection and
snapshots; who may connect and see what (:mod:`~takhin_ws.core.access`) and the lag
insight (:mod:`~takhin_ws.core.lag`). No sockets.

Internal: import from ``takhin_ws`` and its public tiers."""
