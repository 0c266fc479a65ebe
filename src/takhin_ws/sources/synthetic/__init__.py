"""The ``synthetic`` source: a seeded, self-consistent fake cluster (the default).

Internal: import from :mod:`takhin_ws.sources`."""
