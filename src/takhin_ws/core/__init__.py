"""The sans-IO core: the hub and its history, views, queues and client registry, the
session core, admission, chart series, change detection and snapshots. No sockets.

Internal: import from ``takhin_ws`` and its public tiers."""
