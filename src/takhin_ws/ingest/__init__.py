"""Ingestion: the metrics producer, the event ingress and the event bus.

Internal: import from ``takhin_ws`` and its public tiers."""
