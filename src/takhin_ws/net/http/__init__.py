"""The plain-HTTP side of the port: the routes (answers without I/O), one exchange's
I/O, and the pages they serve: the dashboard, ``/metrics`` and ``/readyz``'s status.

Internal: import from ``takhin_ws`` and its public tiers."""
