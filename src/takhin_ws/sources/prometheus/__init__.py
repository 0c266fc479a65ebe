"""The ``prometheus`` source: a Takhin broker's Prometheus exposition, scraped and read.

Internal: import from :mod:`takhin_ws.sources`."""
